// Host entry points of the CUDA kernels: raw pointers, sizes and a stream, no torch headers, so
// every .cu file compiles with nvcc alone (CI compiles them for sm_90 without a GPU). Each
// returns the launch's cudaError_t; kernels/cuda/ops_cuda.cpp is the torch-facing binding.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "bldm_fast/step_math.h"

namespace bldm_fast::cuda {

// Element types the kernels read or write.
enum class DType : int { kBool, kU8, kF16, kBF16, kF32, kF64 };

// bits: rows x channels of `dtype` (nonzero = 1); packed: rows x ceil(channels/8). For floating
// dtypes `bad` (device int, zeroed by the caller) is set to 1 when a value is neither 0 nor 1.
cudaError_t pack_bits(const void* bits, DType dtype, int64_t rows, int64_t channels, uint8_t* packed, int* bad,
                      cudaStream_t stream);

// packed: rows x ceil(channels/8) -> out: rows x channels 0/1 of `dtype`.
cudaError_t unpack_bits(const uint8_t* packed, int64_t rows, int64_t channels, void* out, DType dtype,
                        cudaStream_t stream);

// `rng` points to the device int64 pair [seed, offset] (uint64 bit patterns) every random kernel
// reads, so new values need neither a host sync nor a new launch configuration (CUDA graphs).

// out: n float32 uniforms (uniform = true) or n int64 words of the stream rng.
cudaError_t philox_fill(void* out, bool uniform, int64_t n, const int64_t* rng, cudaStream_t stream);

struct NoiseArgs {
  const uint8_t* x0;        // rows x ceil(C/8)
  const float* thresholds;  // batch x 2: [thr1, thr0]
  int64_t rows, rows_per_sample, channels;
  const int64_t* rng;  // device [seed, offset]
  uint8_t* packed;     // rows x ceil(C/8)
  void* unpacked;      // rows x C of unpacked_dtype, or null
  DType unpacked_dtype;
  uint8_t* flip;       // rows x ceil(C/8), or null
};
cudaError_t bernoulli_noise(const NoiseArgs& args, cudaStream_t stream);

struct StepArgs {
  const void* logits;  // rows x C of logits_dtype (kF32, kF16 or kBF16)
  const void* uncond;  // the same, or null (no guidance)
  DType logits_dtype;
  const uint8_t* xt;   // rows x ceil(C/8)
  const uint8_t* mask;   // rows x ceil(C/8), or null
  const uint8_t* known;  // rows x ceil(C/8), or null
  int64_t rows, channels;
  const float* scalars;  // device [inv_temp, g, k_prev, b_prev, qh, ql, final] (final != 0: threshold step)
  const int64_t* rng;    // device [seed, offset]
  bool predict_flip;
  uint8_t* packed;  // rows x ceil(C/8)
  float* probs;     // rows x C, or null
  void* unpacked;   // rows x C of unpacked_dtype, or null
  DType unpacked_dtype;
  int* nan_flag;    // device int; set to 1 when a (guided) logit is NaN (never cleared)
};
cudaError_t sample_step(const StepArgs& args, cudaStream_t stream);

// logits: rows x C of logits_dtype -> packed rows x ceil(C/8): [u < sigmoid(l)] (bernoulli) or [l > 0].
// nan_flag (device int, zeroed by the caller) is set to 1 when a logit is NaN.
cudaError_t binarize(const void* logits, DType logits_dtype, int64_t rows, int64_t channels, bool bernoulli,
                     const int64_t* rng, uint8_t* packed, int* nan_flag, cudaStream_t stream);

// logits: n values of logits_dtype -> out: n bytes floor(sigmoid(l) * 255 + 0.5); nan_flag as binarize.
cudaError_t quantize_probs(const void* logits, DType logits_dtype, int64_t n, uint8_t* out, int* nan_flag,
                           cudaStream_t stream);

struct FlipBceArgs {
  const void* logits;  // rows x C of logits_dtype (kF32, kF16 or kBF16)
  DType logits_dtype;
  const uint8_t* target;  // rows x ceil(C/8)
  const float* pos_weight;  // batch
  const float* neg_weight;  // batch
  int64_t rows, rows_per_sample, channels;
  float* partial;  // one float per block: the block's sum of w * loss (the caller sums them)
  void* grad;      // rows x C of logits_dtype: w * (sigmoid(l) - y)
};
// Number of blocks (= partial sums) flip_bce launches for these sizes.
int flip_bce_blocks(int64_t rows, int64_t channels);
cudaError_t flip_bce(const FlipBceArgs& args, cudaStream_t stream);

}  // namespace bldm_fast::cuda
