// philox_fill_: the bare random stream as uint32 words (int64 out) or float32 uniforms.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "op_checks.h"
#include "cpu_utils.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

void philox_fill(at::Tensor& out, const at::Tensor& stream) {
  check_philox_out(out, stream, at::kCPU);
  const auto dt = out.scalar_type();
  // seed and offset travel as int64 bit patterns of their uint64 values.
  const int64_t* st = stream.data_ptr<int64_t>();
  const auto s = static_cast<uint64_t>(st[kSeed]), o = static_cast<uint64_t>(st[kOffset]);
  const int64_t n = out.numel();
  at::parallel_for(0, (n + kTileElems - 1) / kTileElems, grain_tiles(kTileElems), [&](int64_t t0, int64_t t1) {
    const int64_t i0 = t0 * kTileElems, count = std::min(n, t1 * kTileElems) - i0;
    if (dt == at::kFloat) {
      uniform_range(s, o, i0, count, out.data_ptr<float>() + i0);
      return;
    }
    uint32_t* w = scratch<uint32_t, 0>(count);
    words_range(s, o, i0, count, w);
    int64_t* po = out.data_ptr<int64_t>() + i0;
    for (int64_t j = 0; j < count; ++j) po[j] = w[j];
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) { m.impl("philox_fill_", &philox_fill); }

}  // namespace bldm_fast::cpu
