// philox_fill: the bare random stream, one thread per counter (four elements).
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

__global__ void __launch_bounds__(kThreads) fill_kernel(void* out, bool uniform, int64_t n, const int64_t* rng) {
  const uint64_t seed = static_cast<uint64_t>(rng[0]), offset = static_cast<uint64_t>(rng[1]);
  const int64_t counters = (n + 3) / 4;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < counters;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const PhiloxWords p = philox4x32_10(seed, offset + static_cast<uint64_t>(c));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t e = 4 * c + k;
      if (e >= n) break;
      if (uniform) {
        static_cast<float*>(out)[e] = word_to_uniform(p.w[k]);
      } else {
        static_cast<int64_t*>(out)[e] = p.w[k];
      }
    }
  }
}

}  // namespace

cudaError_t philox_fill(void* out, bool uniform, int64_t n, const int64_t* rng, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_kernel<<<grid_blocks((n + 3) / 4), kThreads, 0, stream>>>(out, uniform, n, rng);
  return cudaGetLastError();
}

}  // namespace bldm_fast::cuda
