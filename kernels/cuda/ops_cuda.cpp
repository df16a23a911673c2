// The CUDA dispatch of the torch.library ops (schemas in kernels/ops.cpp): input checks shared
// with the CPU kernels (op_checks.h), output allocation, then the raw launchers of launchers.h on
// the current stream. Every launch's error is checked. The kernels read seed/offset (and the step's
// scalars) from device memory, so a call needs no host value. pack_bits of floats, binarize and
// quantize_probs read their bad-input flag back (one sync) so bad input raises before the op returns;
// sample_step does so only with check_nan (a sampling loop passes false and reads its accumulated
// flags once, at the end). Built only where torch has CUDA.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/launchers.h"
#include "op_checks.h"

namespace bldm_fast::cuda {
namespace {

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kBool: return DType::kBool;
    case at::kByte: return DType::kU8;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kFloat: return DType::kF32;
    case at::kDouble: return DType::kF64;
    default: TORCH_CHECK_TYPE(false, "bldm_fast CUDA kernels do not handle dtype ", t);
  }
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

at::Tensor pack_bits_op(const at::Tensor& bits) {
  check_pack_inputs(bits, at::kCUDA);
  const c10::cuda::CUDAGuard guard(bits.device());
  const int64_t channels = bits.size(-1);
  at::Tensor out = at::empty(with_last(leading_dims(bits), packed_size(channels)), bits.options().dtype(at::kByte));
  const at::Tensor x = bits.contiguous();
  at::Tensor bad = at::zeros({1}, bits.options().dtype(at::kInt));
  check_launch(cuda::pack_bits(x.data_ptr(), to_dtype(x.scalar_type()), x.numel() / channels, channels,
                               out.data_ptr<uint8_t>(), bad.data_ptr<int>(), stream()),
               "pack_bits");
  TORCH_CHECK_VALUE(!x.is_floating_point() || bad.item<int>() == 0, kNot01);
  return out;
}

at::Tensor unpack_bits_op(const at::Tensor& packed, int64_t channels, at::ScalarType dtype) {
  check_unpack_inputs(packed, channels, dtype, at::kCUDA);
  const c10::cuda::CUDAGuard guard(packed.device());
  at::Tensor out = at::empty(with_last(leading_dims(packed), channels), packed.options().dtype(dtype));
  const at::Tensor p = packed.contiguous();
  check_launch(cuda::unpack_bits(p.data_ptr<uint8_t>(), p.numel() / packed_size(channels), channels,
                                 out.data_ptr(), to_dtype(dtype), stream()),
               "unpack_bits");
  return out;
}

void philox_fill_op(at::Tensor& out, const at::Tensor& rng) {
  check_philox_out(out, rng, at::kCUDA);
  const c10::cuda::CUDAGuard guard(out.device());
  check_launch(cuda::philox_fill(out.data_ptr(), out.scalar_type() == at::kFloat, out.numel(),
                                 rng.data_ptr<int64_t>(), stream()),
               "philox_fill_");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bernoulli_noise_op(const at::Tensor& x0_packed,
                                                               const at::Tensor& thresholds, int64_t channels,
                                                               const at::Tensor& rng,
                                                               std::optional<at::ScalarType> out_dtype,
                                                               bool return_flip) {
  check_noise_inputs(x0_packed, thresholds, channels, rng, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x0_packed.device());
  at::Tensor packed, unpacked, flip;
  std::tie(packed, unpacked, flip) = noise_outputs(x0_packed, channels, out_dtype, return_flip);
  const at::Tensor x0 = x0_packed.contiguous();
  const at::Tensor thr = thresholds.contiguous();
  const int64_t rows = x0.numel() / packed_size(channels);
  NoiseArgs a{};
  a.x0 = x0.data_ptr<uint8_t>();
  a.thresholds = thr.data_ptr<float>();
  a.rows = rows;
  a.rows_per_sample = x0.size(0) > 0 ? rows / x0.size(0) : 1;
  a.channels = channels;
  a.rng = rng.data_ptr<int64_t>();
  a.packed = packed.data_ptr<uint8_t>();
  a.unpacked = out_dtype ? unpacked.data_ptr() : nullptr;
  a.unpacked_dtype = out_dtype ? to_dtype(*out_dtype) : DType::kU8;
  a.flip = return_flip ? flip.data_ptr<uint8_t>() : nullptr;
  check_launch(cuda::bernoulli_noise(a, stream()), "bernoulli_noise");
  return {packed, unpacked, flip};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sample_step_op(
    const at::Tensor& logits, const std::optional<at::Tensor>& uncond, const at::Tensor& xt_packed,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& known, const at::Tensor& scalars,
    const at::Tensor& rng, bool predict_flip, bool return_probs, std::optional<at::ScalarType> out_dtype,
    bool check_nan) {
  check_step_inputs(logits, uncond, xt_packed, mask, known, scalars, rng, at::kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor packed, probs, unpacked, nan;
  std::tie(packed, probs, unpacked, nan) = step_outputs(logits, xt_packed, return_probs, out_dtype);
  const at::Tensor lc = logits.contiguous();
  const at::Tensor uc = uncond ? uncond->contiguous() : at::Tensor();
  const at::Tensor xc = xt_packed.contiguous();
  const at::Tensor mc = mask ? mask->contiguous() : at::Tensor();
  const at::Tensor kc = known ? known->contiguous() : at::Tensor();
  StepArgs a{};
  a.logits = lc.data_ptr();
  a.uncond = uncond ? uc.data_ptr() : nullptr;
  a.logits_dtype = to_dtype(lc.scalar_type());
  a.xt = xc.data_ptr<uint8_t>();
  a.mask = mask ? mc.data_ptr<uint8_t>() : nullptr;
  a.known = known ? kc.data_ptr<uint8_t>() : nullptr;
  a.channels = logits.size(-1);
  a.rows = logits.numel() / a.channels;
  a.scalars = scalars.data_ptr<float>();
  a.rng = rng.data_ptr<int64_t>();
  a.predict_flip = predict_flip;
  a.packed = packed.data_ptr<uint8_t>();
  a.probs = return_probs ? probs.data_ptr<float>() : nullptr;
  a.unpacked = out_dtype ? unpacked.data_ptr() : nullptr;
  a.unpacked_dtype = out_dtype ? to_dtype(*out_dtype) : DType::kU8;
  a.nan_flag = nan.data_ptr<int>();
  check_launch(cuda::sample_step(a, stream()), "sample_step");
  TORCH_CHECK_VALUE(!check_nan || nan.item<int>() == 0, kNanMessage);
  return {packed, probs, unpacked, nan};
}

std::tuple<at::Tensor, at::Tensor> flip_bce_op(const at::Tensor& logits, const at::Tensor& target_packed,
                                               const at::Tensor& pos_weight, const at::Tensor& neg_weight) {
  check_flip_bce_inputs(logits, target_packed, pos_weight, neg_weight, at::kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor grad = at::empty(logits.sizes(), logits.options());
  const int64_t channels = logits.size(-1), rows = logits.numel() / channels;
  if (rows == 0) return {at::zeros({}, logits.options().dtype(at::kFloat)), grad};
  const at::Tensor lc = logits.contiguous(), tc = target_packed.contiguous();
  const at::Tensor w1 = pos_weight.contiguous(), w0 = neg_weight.contiguous();
  at::Tensor partial = at::empty({flip_bce_blocks(rows, channels)}, logits.options().dtype(at::kFloat));
  FlipBceArgs a{};
  a.logits = lc.data_ptr();
  a.logits_dtype = to_dtype(lc.scalar_type());
  a.target = tc.data_ptr<uint8_t>();
  a.pos_weight = w1.data_ptr<float>();
  a.neg_weight = w0.data_ptr<float>();
  a.rows = rows;
  a.rows_per_sample = rows / logits.size(0);
  a.channels = channels;
  a.partial = partial.data_ptr<float>();
  a.grad = grad.data_ptr();
  check_launch(cuda::flip_bce(a, stream()), "flip_bce");
  return {partial.sum(), grad};
}

at::Tensor binarize_op(const at::Tensor& logits, bool bernoulli, const at::Tensor& rng) {
  check_logits(logits, "binarize", 1, at::kCUDA);
  check_stream(rng, "binarize", at::kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t channels = logits.size(-1);
  at::Tensor packed = at::empty(with_last(leading_dims(logits), packed_size(channels)), logits.options().dtype(at::kByte));
  const at::Tensor lc = logits.contiguous();
  at::Tensor nan = at::zeros({1}, logits.options().dtype(at::kInt));
  check_launch(cuda::binarize(lc.data_ptr(), to_dtype(lc.scalar_type()), lc.numel() / channels, channels, bernoulli,
                              rng.data_ptr<int64_t>(), packed.data_ptr<uint8_t>(), nan.data_ptr<int>(), stream()),
               "binarize");
  TORCH_CHECK_VALUE(nan.item<int>() == 0, kBinarizeNan);
  return packed;
}

at::Tensor quantize_probs_op(const at::Tensor& logits) {
  check_logits(logits, "quantize_probs", 1, at::kCUDA);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor out = at::empty(logits.sizes(), logits.options().dtype(at::kByte));
  const at::Tensor lc = logits.contiguous();
  at::Tensor nan = at::zeros({1}, logits.options().dtype(at::kInt));
  check_launch(cuda::quantize_probs(lc.data_ptr(), to_dtype(lc.scalar_type()), lc.numel(), out.data_ptr<uint8_t>(),
                                    nan.data_ptr<int>(), stream()),
               "quantize_probs");
  TORCH_CHECK_VALUE(nan.item<int>() == 0, kQuantizeNan);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CUDA, m) {
  m.impl("pack_bits", &pack_bits_op);
  m.impl("unpack_bits", &unpack_bits_op);
  m.impl("philox_fill_", &philox_fill_op);
  m.impl("bernoulli_noise", &bernoulli_noise_op);
  m.impl("sample_step", &sample_step_op);
  m.impl("flip_bce", &flip_bce_op);
  m.impl("binarize", &binarize_op);
  m.impl("quantize_probs", &quantize_probs_op);
}

}  // namespace bldm_fast::cuda
