// sample_step: one thread per packed byte of x_t; the step math of bldm_fast/step_math.h (the
// same functions as the CPU kernels, compiled with --fmad=false). Logits of a byte are read with
// 16-byte loads where the byte holds 8 aligned channels.
#include <cstdint>

#include "bldm_fast/packing.h"
#include "bldm_fast/step_math.h"
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

template <typename T, bool kAligned>
__global__ void __launch_bounds__(kThreads) step_kernel(StepArgs a) {
  const int64_t nb = packed_size(a.channels), n_bytes = a.rows * nb;
  const T* cond = static_cast<const T*>(a.logits);
  const T* uncond = static_cast<const T*>(a.uncond);
  // The step's scalars and stream come from device memory (one broadcast load per thread).
  const float inv_temp = a.scalars[0], gw = a.scalars[1];
  const StepConstants constants{a.scalars[2], a.scalars[3], a.scalars[4], a.scalars[5]};
  const bool final_step = a.scalars[6] != 0.0f;
  const uint64_t seed = static_cast<uint64_t>(a.rng[0]), offset = static_cast<uint64_t>(a.rng[1]);
  int nan = 0;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const auto [row, i0, nbits] = byte_span<kAligned>(g, nb, a.channels);
    float l[8];
    load8(cond, i0, nbits, l);
    if (uncond) {
      float u[8];
      load8(uncond, i0, nbits, u);
#pragma unroll
      for (int j = 0; j < 8; ++j) l[j] = guided_logit(l[j], u[j], inv_temp, gw);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) l[j] = guided_logit(l[j], inv_temp);
    }
    const uint8_t xb = a.xt[g];
    ByteWords w{};
    if (!final_step) w = byte_words(seed, offset, i0, nbits);
    float prob[8];
    uint8_t out = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < nbits) {
        const bool x = (xb >> j) & 1;
        const P0Pair p = p0_pair(l[j], x, a.predict_flip);
        bool bit;
        if (final_step) {
          prob[j] = p.p0;
          bit = final_bit(l[j], x, a.predict_flip);
        } else {
          prob[j] = posterior(p, x, constants);
          bit = word_to_uniform(w.word(j)) < prob[j];
        }
        out |= static_cast<uint8_t>(bit << j);
        nan |= l[j] != l[j];
      }
    }
    if (a.mask) {
      const uint8_t m = a.mask[g];
      out = static_cast<uint8_t>(((out & ~m) | (a.known[g] & m)) & ((1u << nbits) - 1));
    }
    a.packed[g] = out;
    if (a.probs) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (j < nbits) a.probs[i0 + j] = prob[j];
      }
    }
    if (a.unpacked) {
      for (int j = 0; j < nbits; ++j) store_bit(a.unpacked, a.unpacked_dtype, i0 + j, (out >> j) & 1);
    }
  }
  if (nan) atomicOr(a.nan_flag, 1);
}

}  // namespace

cudaError_t sample_step(const StepArgs& args, cudaStream_t stream) {
  const int64_t n_bytes = args.rows * packed_size(args.channels);
  if (n_bytes == 0) return cudaSuccess;
  const int blocks = grid_blocks(n_bytes);
  return with_logits_type(args.logits_dtype, [&](auto tag) {
    with_alignment(args.channels, [&](auto aligned) {
      step_kernel<decltype(tag), decltype(aligned)::value><<<blocks, kThreads, 0, stream>>>(args);
    });
  });
}

}  // namespace bldm_fast::cuda
