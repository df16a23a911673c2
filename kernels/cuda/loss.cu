// flip_bce: weighted BCE-with-logits against packed targets and its gradient, one thread per
// packed byte; each block writes one partial sum (summed by the caller in a fixed order, so the
// result does not depend on scheduling).
#include "bldm_fast/bce_math.h"
#include "bldm_fast/packing.h"
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

template <typename T, bool kAligned>
__global__ void __launch_bounds__(kThreads) flip_bce_kernel(FlipBceArgs a) {
  const int64_t nb = packed_size(a.channels), n_bytes = a.rows * nb;
  const T* logits = static_cast<const T*>(a.logits);
  T* grad = static_cast<T*>(a.grad);
  float sum = 0.0f;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const auto [row, i0, nbits] = byte_span<kAligned>(g, nb, a.channels);
    const int64_t b = div_nonneg(row, a.rows_per_sample);
    const float w1 = a.pos_weight[b], w0 = a.neg_weight[b];
    const uint8_t y = a.target[g];
    float l[8], gr[8] = {};
    load8(logits, i0, nbits, l);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < nbits) {
        const bool t = (y >> j) & 1;
        const BceTerm term = bce_with_logits(l[j], t);
        const float w = t ? w1 : w0;
        sum += w * term.loss;
        gr[j] = w * term.grad;
      }
    }
    store8(grad, i0, nbits, gr);
  }
  __shared__ float warp_sums[kThreads / 32];
  for (int d = 16; d > 0; d >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, d);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float block = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) block += warp_sums[w];
    a.partial[blockIdx.x] = block;
  }
}

}  // namespace

int flip_bce_blocks(int64_t rows, int64_t channels) { return grid_blocks(rows * packed_size(channels)); }

cudaError_t flip_bce(const FlipBceArgs& args, cudaStream_t stream) {
  const int blocks = flip_bce_blocks(args.rows, args.channels);
  return with_logits_type(args.logits_dtype, [&](auto tag) {
    with_alignment(args.channels, [&](auto aligned) {
      flip_bce_kernel<decltype(tag), decltype(aligned)::value><<<blocks, kThreads, 0, stream>>>(args);
    });
  });
}

}  // namespace bldm_fast::cuda
