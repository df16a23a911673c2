// Input validation and output allocation at the C++ boundary, shared by the CPU kernels and the
// CUDA binding, for callers of torch.ops.bldm_fast.* that bypass the Python checks.
// TORCH_CHECK_TYPE raises TypeError, TORCH_CHECK_VALUE raises ValueError.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "bldm_fast/packing.h"

namespace bldm_fast {

inline void check_device(const at::Tensor& t, const char* op, const char* name, at::DeviceType type) {
  TORCH_CHECK_VALUE(t.device().type() == type, op, ": ", name, " must be a ", c10::DeviceTypeName(type),
                    " tensor for this backend, got ", t.device());
}

inline std::vector<int64_t> leading_dims(const at::Tensor& t) {
  auto s = t.sizes().vec();
  s.pop_back();
  return s;
}

inline std::vector<int64_t> with_last(std::vector<int64_t> leading, int64_t last) {
  leading.push_back(last);
  return leading;
}

// `name` is uint8 on `type` with shape leading + [ceil(channels / 8)].
inline void check_packed(const at::Tensor& t, const char* op, const char* name, at::IntArrayRef leading,
                         int64_t channels, at::DeviceType type) {
  check_device(t, op, name, type);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kByte, op, ": ", name, " must be uint8 packed bits, got ",
                   t.scalar_type());
  std::vector<int64_t> want(leading.begin(), leading.end());
  want.push_back(packed_size(channels));
  TORCH_CHECK_VALUE(t.sizes().vec() == want, op, ": ", name, " must have shape ", at::IntArrayRef(want),
                    " (ceil(", channels, " / 8) bytes per row), got ", t.sizes());
}

inline void check_pack_inputs(const at::Tensor& bits, at::DeviceType type) {
  check_device(bits, "pack_bits", "bits", type);
  TORCH_CHECK_VALUE(bits.dim() >= 1 && bits.size(-1) >= 1,
                    "pack_bits: bits must have a last (channel) dimension of size >= 1, got shape ", bits.sizes());
  const auto dt = bits.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kBool || dt == at::kByte || at::isFloatingType(dt),
                   "pack_bits: bits must be bool, uint8 or floating point, got ", dt);
}

inline void check_unpack_inputs(const at::Tensor& packed, int64_t channels, at::ScalarType dtype, at::DeviceType type) {
  TORCH_CHECK_VALUE(channels >= 1, "unpack_bits: channels must be >= 1, got ", channels);
  TORCH_CHECK_VALUE(packed.dim() >= 1, "unpack_bits: packed must have a last (byte) dimension");
  check_packed(packed, "unpack_bits", "packed", leading_dims(packed), channels, type);
  TORCH_CHECK_TYPE(dtype == at::kBool || dtype == at::kByte || at::isFloatingType(dtype),
                   "unpack_bits: dtype must be bool, uint8 or floating point, got ", dtype);
}

// Layout of the float32 `scalars` tensor of sample_step, and of the int64 `stream` tensor.
enum StepScalar : int { kInvTemp = 0, kGuidance, kKPrev, kBPrev, kQh, kQl, kFinal, kNumStepScalars };
enum StreamWord : int { kSeed = 0, kOffset, kStreamWords };

// `name` is a contiguous 1-d tensor of `n` elements of `dtype` on `type`.
inline void check_small(const at::Tensor& t, const char* op, const char* name, at::ScalarType dtype, int64_t n,
                        at::DeviceType type, const char* layout) {
  check_device(t, op, name, type);
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, " ", layout, ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n && t.is_contiguous(), op, ": ", name,
                    " must be a contiguous (", n, ",) tensor ", layout, ", got shape ", t.sizes());
}

inline void check_stream(const at::Tensor& stream, const char* op, at::DeviceType type) {
  check_small(stream, op, "stream", at::kLong, kStreamWords, type, "[seed, offset]");
}

inline void check_philox_out(const at::Tensor& out, const at::Tensor& stream, at::DeviceType type) {
  check_device(out, "philox_fill_", "out", type);
  check_stream(stream, "philox_fill_", type);
  TORCH_CHECK_VALUE(out.is_contiguous(), "philox_fill_: out must be contiguous");
  TORCH_CHECK_TYPE(out.scalar_type() == at::kFloat || out.scalar_type() == at::kLong,
                   "philox_fill_: out must be float32 (uniforms) or int64 (words), got ", out.scalar_type());
}

inline void check_noise_inputs(const at::Tensor& x0_packed, const at::Tensor& thresholds, int64_t channels,
                               const at::Tensor& stream, at::DeviceType type) {
  const char* op = "bernoulli_noise";
  check_stream(stream, op, type);
  TORCH_CHECK_VALUE(channels >= 1, op, ": channels must be >= 1, got ", channels);
  TORCH_CHECK_VALUE(x0_packed.dim() >= 2, op, ": x0_packed must be (B, ..., ceil(C/8)), got shape ",
                    x0_packed.sizes());
  check_packed(x0_packed, op, "x0_packed", leading_dims(x0_packed), channels, type);
  check_device(thresholds, op, "thresholds", type);
  TORCH_CHECK_TYPE(thresholds.scalar_type() == at::kFloat, op, ": thresholds must be float32");
  const int64_t batch = x0_packed.size(0);
  TORCH_CHECK_VALUE(thresholds.sizes() == at::IntArrayRef({batch, 2}), op,
                    ": thresholds must have shape (B, 2) = (", batch, ", 2), got ", thresholds.sizes());
}

// float32/float16/bfloat16 logits on `type` with at least `min_dim` dims and C >= 1.
inline void check_logits(const at::Tensor& logits, const char* op, int64_t min_dim, at::DeviceType type) {
  check_device(logits, op, "logits", type);
  const auto dt = logits.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, op,
                   ": logits must be float32, float16 or bfloat16, got ", dt);
  TORCH_CHECK_VALUE(logits.dim() >= min_dim && logits.size(-1) >= 1, op, ": logits must have at least ", min_dim,
                    " dims, the last (channels) of size >= 1, got shape ", logits.sizes());
}

inline void check_step_inputs(const at::Tensor& logits, const std::optional<at::Tensor>& uncond,
                              const at::Tensor& xt_packed, const std::optional<at::Tensor>& mask,
                              const std::optional<at::Tensor>& known, const at::Tensor& scalars,
                              const at::Tensor& stream, at::DeviceType type) {
  const char* op = "sample_step";
  check_logits(logits, op, 1, type);
  check_small(scalars, op, "scalars", at::kFloat, kNumStepScalars, type,
              "[inv_temp, g, k_prev, b_prev, qh, ql, final]");
  check_stream(stream, op, type);
  const auto dt = logits.scalar_type();
  if (uncond) {
    check_device(*uncond, op, "uncond_logits", type);
    TORCH_CHECK_TYPE(uncond->scalar_type() == dt, op, ": uncond_logits must have the dtype of logits (", dt,
                     "), got ", uncond->scalar_type());
    TORCH_CHECK_VALUE(uncond->sizes() == logits.sizes(), op, ": uncond_logits must have the shape of logits ",
                      logits.sizes(), ", got ", uncond->sizes());
  }
  const auto leading = leading_dims(logits);
  check_packed(xt_packed, op, "xt_packed", leading, logits.size(-1), type);
  TORCH_CHECK_VALUE(mask.has_value() == known.has_value(), op, ": mask and known must be given together");
  if (mask) {
    check_packed(*mask, op, "mask", leading, logits.size(-1), type);
    check_packed(*known, op, "known", leading, logits.size(-1), type);
  }
}

inline void check_flip_bce_inputs(const at::Tensor& logits, const at::Tensor& target_packed,
                                  const at::Tensor& pos_weight, const at::Tensor& neg_weight, at::DeviceType type) {
  const char* op = "flip_bce";
  check_logits(logits, op, 2, type);
  check_packed(target_packed, op, "target_packed", leading_dims(logits), logits.size(-1), type);
  for (const auto* w : {&pos_weight, &neg_weight}) {
    const char* name = w == &pos_weight ? "pos_weight" : "neg_weight";
    check_device(*w, op, name, type);
    TORCH_CHECK_TYPE(w->scalar_type() == at::kFloat, op, ": ", name, " must be float32, got ", w->scalar_type());
    TORCH_CHECK_VALUE(w->sizes() == at::IntArrayRef({logits.size(0)}), op, ": ", name, " must have shape (B,) = (",
                      logits.size(0), ",), got ", w->sizes());
  }
}

// (packed x_t, unpacked x_t or empty, flip or empty) for bernoulli_noise.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> noise_outputs(const at::Tensor& x0_packed, int64_t channels,
                                                                    std::optional<at::ScalarType> out_dtype,
                                                                    bool return_flip) {
  const auto opts = x0_packed.options();
  at::Tensor packed = at::empty(x0_packed.sizes(), opts);
  at::Tensor unpacked = out_dtype ? at::empty(with_last(leading_dims(x0_packed), channels), opts.dtype(*out_dtype))
                                  : at::empty({0}, opts);
  at::Tensor flip = return_flip ? at::empty(x0_packed.sizes(), opts) : at::empty({0}, opts);
  return {packed, unpacked, flip};
}

// (packed x_{t_prev}, probs or empty, unpacked or empty, int32 (1,) NaN flag zeroed) for sample_step.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> step_outputs(const at::Tensor& logits,
                                                                   const at::Tensor& xt_packed, bool return_probs,
                                                                   std::optional<at::ScalarType> out_dtype) {
  const auto opts = xt_packed.options();
  at::Tensor packed = at::empty(xt_packed.sizes(), opts);
  at::Tensor probs = return_probs ? at::empty(logits.sizes(), opts.dtype(at::kFloat)) : at::empty({0}, opts);
  at::Tensor unpacked = out_dtype ? at::empty(logits.sizes(), opts.dtype(*out_dtype)) : at::empty({0}, opts);
  return {packed, probs, unpacked, at::zeros({1}, opts.dtype(at::kInt))};
}

inline const char* kNanMessage = "sample_step: logits contain NaN (or guidance combined infinite logits into NaN)";
inline const char* kBinarizeNan = "binarize: logits contain NaN";
inline const char* kQuantizeNan = "quantize_probs: logits contain NaN";
inline const char* kNot01 = "pack_bits: bits must hold only 0 or 1, found another value";

}  // namespace bldm_fast
