// pack_bits / unpack_bits on the CPU.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>

#include "bits_cpu.h"
#include "op_checks.h"
#include "cpu_utils.h"

namespace bldm_fast::cpu {
namespace {

at::Tensor pack_bits(const at::Tensor& bits) {
  check_pack_inputs(bits, at::kCPU);
  const auto dt = bits.scalar_type();
  const int64_t channels = bits.size(-1), nb = packed_size(channels);
  at::Tensor out = at::empty(with_last(leading_dims(bits), nb), bits.options().dtype(at::kByte));
  const int64_t rows = bits.numel() / channels;
  if (rows == 0) return out;
  const at::Tensor x = bits.contiguous();
  uint8_t* po = out.data_ptr<uint8_t>();
  if (dt == at::kBool || dt == at::kByte) {
    const auto* pi = static_cast<const uint8_t*>(x.data_ptr());
    for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
      pack_rows(pi + r0 * channels, r1 - r0, channels, po + r0 * nb);
    });
    return out;
  }
  const KernelTable& k = kernels();
  const FloatType type = float_type(dt);
  std::atomic<bool> bad{false};
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels;
    uint8_t* ones = scratch<uint8_t, 0>(n);
    if (k.floats_to_ones(element_ptr(x, r0 * channels), type, n, ones)) bad = true;
    k.pack_rows(ones, r1 - r0, channels, po + r0 * nb);
  });
  TORCH_CHECK_VALUE(!bad, kNot01);
  return out;
}

at::Tensor unpack_bits(const at::Tensor& packed, int64_t channels, at::ScalarType dtype) {
  check_unpack_inputs(packed, channels, dtype, at::kCPU);
  const int64_t nb = packed_size(channels);
  at::Tensor out = at::empty(with_last(leading_dims(packed), channels), packed.options().dtype(dtype));
  const int64_t rows = packed.numel() / nb;
  if (rows == 0) return out;
  const at::Tensor p = packed.contiguous();
  const uint8_t* pi = p.data_ptr<uint8_t>();
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const uint8_t* in = pi + r0 * nb;
    if (dtype == at::kFloat) {
      unpack_rows_float(in, r1 - r0, channels, out.data_ptr<float>() + r0 * channels);
    } else if (dtype == at::kBool || dtype == at::kByte) {
      unpack_rows(in, r1 - r0, channels, static_cast<uint8_t*>(out.data_ptr()) + r0 * channels);
    } else {
      uint8_t* ones = scratch<uint8_t, 0>((r1 - r0) * channels);
      unpack_rows(in, r1 - r0, channels, ones);
      store_ones(ones, (r1 - r0) * channels, out, r0 * channels);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) {
  m.impl("pack_bits", &pack_bits);
  m.impl("unpack_bits", &unpack_bits);
}

}  // namespace bldm_fast::cpu
