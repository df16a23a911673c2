// bernoulli_noise on the CPU: packed x_0 -> packed x_t (+ unpacked x_t, + packed flip target).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "bits_cpu.h"
#include "checks.h"
#include "cpu_utils.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

// xt[j] = u[j] < (x0[j] ? thr1 : thr0), flip[j] = xt[j] ^ x0[j].
void noise_run(const uint8_t* __restrict x0, const float* __restrict u, int64_t n, float thr1, float thr0,
               uint8_t* __restrict xt, uint8_t* __restrict flip) {
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t bit = u[j] < (x0[j] ? thr1 : thr0);
    xt[j] = bit;
    flip[j] = bit ^ x0[j];
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bernoulli_noise(
    const at::Tensor& x0_packed, const at::Tensor& thresholds, int64_t channels, int64_t seed,
    int64_t offset, std::optional<at::ScalarType> out_dtype, bool return_flip) {
  const char* op = "bernoulli_noise";
  TORCH_CHECK_VALUE(channels >= 1, op, ": channels must be >= 1, got ", channels);
  TORCH_CHECK_VALUE(x0_packed.dim() >= 2, op, ": x0_packed must be (B, ..., ceil(C/8)), got shape ",
                    x0_packed.sizes());
  check_packed(x0_packed, op, "x0_packed", leading_dims(x0_packed), channels);
  const int64_t batch = x0_packed.size(0);
  check_cpu(thresholds, op, "thresholds");
  TORCH_CHECK_TYPE(thresholds.scalar_type() == at::kFloat, op, ": thresholds must be float32");
  TORCH_CHECK_VALUE(thresholds.sizes() == at::IntArrayRef({batch, 2}), op,
                    ": thresholds must have shape (B, 2) = (", batch, ", 2), got ", thresholds.sizes());

  const int64_t nb = packed_size(channels);
  const auto leading = leading_dims(x0_packed);
  at::Tensor packed = at::empty_like(x0_packed, at::MemoryFormat::Contiguous);
  at::Tensor unpacked = out_dtype ? at::empty(with_last(leading, channels), x0_packed.options().dtype(*out_dtype))
                                  : at::empty({0}, x0_packed.options());
  at::Tensor flip = return_flip ? at::empty_like(packed) : at::empty({0}, x0_packed.options());
  const int64_t rows = x0_packed.numel() / nb;
  if (rows == 0) return {packed, unpacked, flip};
  const int64_t rows_per_sample = rows / batch;
  const at::Tensor x0c = x0_packed.contiguous();
  const at::Tensor thr = thresholds.contiguous();
  const uint8_t* px0 = x0c.data_ptr<uint8_t>();
  const float* pthr = thr.data_ptr<float>();
  const auto s = static_cast<uint64_t>(seed), o = static_cast<uint64_t>(offset);

  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    uint8_t* x0 = scratch<uint8_t, 0>(n);
    uint8_t* xt = scratch<uint8_t, 1>(n);
    uint8_t* fl = scratch<uint8_t, 2>(n);
    float* u = scratch<float, 0>(n);
    unpack_rows(px0 + r0 * nb, r1 - r0, channels, x0);
    uniform_range(s, o, i0, n, u);
    // One run per sample inside the tile: the thresholds change only between samples.
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / rows_per_sample;
      const int64_t r_end = std::min(r1, (b + 1) * rows_per_sample);
      const int64_t j = (r - r0) * channels, m = (r_end - r) * channels;
      noise_run(x0 + j, u + j, m, pthr[2 * b], pthr[2 * b + 1], xt + j, fl + j);
      r = r_end;
    }
    pack_rows(xt, r1 - r0, channels, packed.data_ptr<uint8_t>() + r0 * nb);
    if (return_flip) pack_rows(fl, r1 - r0, channels, flip.data_ptr<uint8_t>() + r0 * nb);
    if (out_dtype) store_ones(xt, n, unpacked, i0);
  });
  return {packed, unpacked, flip};
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) { m.impl("bernoulli_noise", &bernoulli_noise); }

}  // namespace bldm_fast::cpu
