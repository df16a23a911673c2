// flip_bce on the CPU: the weighted BCE-with-logits sum against packed targets and its gradient
// in one pass over the logits (the gradient is what the backward pass returns, scaled).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "bits_cpu.h"
#include "cpu_utils.h"
#include "op_checks.h"

namespace bldm_fast::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> flip_bce(const at::Tensor& logits, const at::Tensor& target_packed,
                                            const at::Tensor& pos_weight, const at::Tensor& neg_weight) {
  check_flip_bce_inputs(logits, target_packed, pos_weight, neg_weight, at::kCPU);
  const int64_t channels = logits.size(-1), nb = packed_size(channels);
  const int64_t rows = logits.numel() / channels, batch = logits.size(0);
  at::Tensor grad = at::empty(logits.sizes(), logits.options());
  if (rows == 0) return {at::zeros({}, logits.options().dtype(at::kFloat)), grad};
  const int64_t rows_per_sample = rows / batch;
  const at::Tensor lc = logits.contiguous(), tc = target_packed.contiguous();
  const at::Tensor w1 = pos_weight.contiguous(), w0 = neg_weight.contiguous();
  const float* pw1 = w1.data_ptr<float>();
  const float* pw0 = w0.data_ptr<float>();
  const int64_t tile = rows_per_tile(channels), tiles = (rows + tile - 1) / tile;
  const KernelTable& k = kernels();
  std::vector<double> partial(tiles, 0.0);  // one per tile, summed in order: deterministic
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    float* g = scratch<float, 1>(n);
    float* term = scratch<float, 2>(n);
    uint8_t* y = scratch<uint8_t, 0>(n);
    load_floats(lc, i0, n, l);
    k.unpack_rows(tc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, y);
    double sum = 0.0;
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / rows_per_sample, r_end = std::min(r1, (b + 1) * rows_per_sample);
      const int64_t j = (r - r0) * channels;
      sum += k.bce_sum(l + j, y + j, (r_end - r) * channels, pw1[b], pw0[b], g + j, term + j);
      r = r_end;
    }
    partial[r0 / tile] = sum;
    store_floats(g, i0, n, grad);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return {at::scalar_tensor(total, logits.options().dtype(at::kFloat)), grad};
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) { m.impl("flip_bce", &flip_bce); }

}  // namespace bldm_fast::cpu
