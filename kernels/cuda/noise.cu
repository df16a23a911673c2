// bernoulli_noise: one thread per packed byte of x_0; x_t = [u < (x_0 ? thr1 : thr0)].
#include "bldm_fast/packing.h"
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

template <bool kAligned>
__global__ void __launch_bounds__(kThreads) noise_kernel(NoiseArgs a) {
  const int64_t nb = packed_size(a.channels), n_bytes = a.rows * nb;
  const uint64_t seed = static_cast<uint64_t>(a.rng[0]), offset = static_cast<uint64_t>(a.rng[1]);
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const auto [row, i0, nbits] = byte_span<kAligned>(g, nb, a.channels);
    const int64_t b = div_nonneg(row, a.rows_per_sample);
    const float thr1 = a.thresholds[2 * b], thr0 = a.thresholds[2 * b + 1];
    const uint8_t x0 = a.x0[g];
    const ByteWords w = byte_words(seed, offset, i0, nbits);
    uint8_t out = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < nbits) {
        const bool bit = word_to_uniform(w.word(j)) < (((x0 >> j) & 1) ? thr1 : thr0);
        out |= static_cast<uint8_t>(bit << j);
      }
    }
    a.packed[g] = out;
    if (a.flip) a.flip[g] = out ^ (x0 & static_cast<uint8_t>((1u << nbits) - 1));
    if (a.unpacked) {
      for (int j = 0; j < nbits; ++j) store_bit(a.unpacked, a.unpacked_dtype, i0 + j, (out >> j) & 1);
    }
  }
}

}  // namespace

cudaError_t bernoulli_noise(const NoiseArgs& args, cudaStream_t stream) {
  const int64_t n_bytes = args.rows * packed_size(args.channels);
  if (n_bytes == 0) return cudaSuccess;
  with_alignment(args.channels, [&](auto aligned) {
    noise_kernel<decltype(aligned)::value><<<grid_blocks(n_bytes), kThreads, 0, stream>>>(args);
  });
  return cudaGetLastError();
}

}  // namespace bldm_fast::cuda
