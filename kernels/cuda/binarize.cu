// binarize / quantize_probs: one thread per packed byte (binarize, 16-byte logit loads where
// aligned) or per element (quantize).
#include "bldm_fast/packing.h"
#include "bldm_fast/step_math.h"
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

template <typename T, bool kAligned>
__global__ void __launch_bounds__(kThreads) binarize_kernel(const T* logits, int64_t rows, int64_t channels,
                                                             bool bernoulli, const int64_t* rng, uint8_t* packed,
                                                             int* nan_flag) {
  const int64_t nb = packed_size(channels), n_bytes = rows * nb;
  const uint64_t seed = static_cast<uint64_t>(rng[0]), offset = static_cast<uint64_t>(rng[1]);
  int nan = 0;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const auto [row, i0, nbits] = byte_span<kAligned>(g, nb, channels);
    ByteWords w{};
    if (bernoulli) w = byte_words(seed, offset, i0, nbits);
    float l[8];
    load8(logits, i0, nbits, l);
    uint8_t out = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < nbits) {
        const bool bit = bernoulli ? word_to_uniform(w.word(j)) < stable_sigmoid(l[j]) : l[j] > 0.0f;
        out |= static_cast<uint8_t>(bit << j);
        nan |= l[j] != l[j];
      }
    }
    packed[g] = out;
  }
  if (nan) atomicOr(nan_flag, 1);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_kernel(const T* logits, int64_t n, uint8_t* out, int* nan_flag) {
  int nan = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float l = to_f(logits[i]);
    out[i] = quantize_unit(stable_sigmoid(l));
    nan |= l != l;
  }
  if (nan) atomicOr(nan_flag, 1);
}

}  // namespace

cudaError_t binarize(const void* logits, DType logits_dtype, int64_t rows, int64_t channels, bool bernoulli,
                     const int64_t* rng, uint8_t* packed, int* nan_flag, cudaStream_t stream) {
  const int64_t n_bytes = rows * packed_size(channels);
  if (n_bytes == 0) return cudaSuccess;
  return with_logits_type(logits_dtype, [&](auto tag) {
    using T = decltype(tag);
    with_alignment(channels, [&](auto aligned) {
      binarize_kernel<T, decltype(aligned)::value><<<grid_blocks(n_bytes), kThreads, 0, stream>>>(
          static_cast<const T*>(logits), rows, channels, bernoulli, rng, packed, nan_flag);
    });
  });
}

cudaError_t quantize_probs(const void* logits, DType logits_dtype, int64_t n, uint8_t* out, int* nan_flag,
                           cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return with_logits_type(logits_dtype, [&](auto tag) {
    using T = decltype(tag);
    quantize_kernel<T><<<grid_blocks(n), kThreads, 0, stream>>>(static_cast<const T*>(logits), n, out, nan_flag);
  });
}

}  // namespace bldm_fast::cuda
