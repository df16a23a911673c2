// The hot loops of the CPU kernels as a table of plain functions over raw buffers, one table per
// instruction set. The loops (the *_loops.h headers) are compiled once per path in their own
// translation unit (avx512.cpp, avx2.cpp, baseline.cpp), each in its own namespace, and
// kernels/cpu/dispatch.cpp picks one table at the first call from the CPU's features. No torch
// headers here or in the loops: an inline function of a shared header compiled for AVX-512 could
// otherwise be merged by the linker into the baseline path.
#pragma once

#include <cstdint>

#include "bldm_fast/step_math.h"

namespace bldm_fast::cpu {

// The element type of a float buffer handed to the loops.
enum class FloatType : int32_t { kFloat32, kFloat16, kBFloat16, kFloat64 };

struct KernelTable {
  // u[j] = uniform of element i0 + j (j < n) of the stream (seed, offset), DESIGN.md section 4.
  void (*uniform_range)(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, float* u);
  // w[j] = Philox word of element i0 + j (j < n).
  void (*words_range)(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, uint32_t* w);
  // rows x channels bytes (any nonzero byte is a 1) -> rows x ceil(channels/8) packed bytes.
  void (*pack_rows)(const uint8_t* bytes, int64_t rows, int64_t channels, uint8_t* packed);
  // packed -> rows x channels 0/1 bytes, or floats 0.0/1.0.
  void (*unpack_rows)(const uint8_t* packed, int64_t rows, int64_t channels, uint8_t* ones);
  void (*unpack_rows_float)(const uint8_t* packed, int64_t rows, int64_t channels, float* out);
  // out[j] = float(in[j]) for j < n (float32/float16/bfloat16 in).
  void (*load_floats)(const void* in, FloatType type, int64_t n, float* out);
  // out[j] = in[j] rounded to `type` (float32/float16/bfloat16, round to nearest even).
  void (*store_floats)(const float* in, int64_t n, FloatType type, void* out);
  // out[j] = ones[j] (0/1) as float.
  void (*ones_to_floats)(const uint8_t* ones, int64_t n, float* out);
  // ones[j] = in[j] != 0 (any float type, compared as float32); returns whether any value is
  // neither 0 nor 1.
  bool (*floats_to_ones)(const void* in, FloatType type, int64_t n, uint8_t* ones);
  // l[j] = guided logit (bldm_fast/step_math.h) of cond[j] (and uncond[j] where uncond is not null).
  void (*guided_logits)(const void* cond, const void* uncond, FloatType type, int64_t n, float inv_temp,
                        float g, float* l);
  // prob[j] = posterior, bit[j] = u[j] < prob[j]; returns whether any logit is NaN.
  bool (*posterior_bits)(const float* l, const uint8_t* xt, const float* u, int64_t n, StepConstants s,
                         bool predict_flip, float* prob, uint8_t* bit);
  // The final step: prob[j] = p0, bit[j] = [l' > 0]; returns whether any logit is NaN.
  bool (*final_probs_bits)(const float* l, const uint8_t* xt, int64_t n, bool predict_flip, float* prob,
                           uint8_t* bit);
  // The final step's bits alone: a sign test, no exp; returns whether any logit is NaN.
  bool (*final_bits)(const float* l, const uint8_t* xt, int64_t n, bool predict_flip, uint8_t* bit);
  // bit[j] = mask[j] ? known[j] : bit[j].
  void (*select_known)(const uint8_t* mask, const uint8_t* known, int64_t n, uint8_t* bit);
  // xt[j] = u[j] < (x0[j] ? thr1 : thr0), flip[j] = xt[j] ^ x0[j].
  void (*noise_bits)(const uint8_t* x0, const float* u, int64_t n, float thr1, float thr0, uint8_t* xt,
                     uint8_t* flip);
  // Sum of w * BCE(l, y) over n elements of one sample (w = w1 where y else w0); grad[j] = w * dBCE/dl;
  // term is scratch of n floats.
  float (*bce_sum)(const float* l, const uint8_t* y, int64_t n, float w1, float w0, float* grad, float* term);
  // bit[j] = bernoulli ? u[j] < sigmoid(l[j]) : l[j] > 0; returns whether any logit is NaN.
  bool (*binarize_bits)(const float* l, const float* u, int64_t n, bool bernoulli, uint8_t* bit);
  // q[j] = floor(sigmoid(l[j]) * 255 + 0.5); returns whether any logit is NaN.
  bool (*quantize)(const float* l, int64_t n, uint8_t* q);
};

// The table of each path (defined only where that path is compiled: x86-64, dispatching build).
namespace cpu_avx512 {
extern const KernelTable kTable;
}
namespace cpu_avx2 {
extern const KernelTable kTable;
}
namespace cpu_baseline {
extern const KernelTable kTable;
}

}  // namespace bldm_fast::cpu
