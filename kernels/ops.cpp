// The torch.library schemas of every bldm_fast op (one definition for all dispatch keys) and the
// Python module entry point of bldm_fast._C. The CPU kernels register in kernels/cpu/, the CUDA
// kernels in the CUDA binding; the fake (meta) implementations live in bldm_fast/_ops_fake.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing bldm_fast._C loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(bldm_fast, m) {
  m.def("pack_bits(Tensor bits) -> Tensor");
  m.def("unpack_bits(Tensor packed, int channels, ScalarType dtype) -> Tensor");
  // stream: int64 (2,) [seed, offset] (int64 bit patterns of the uint64 values) on the op's device,
  // read by the kernels, so new values never recompile a graph nor need a host sync.
  m.def("philox_fill_(Tensor(a!) out, Tensor stream) -> ()");
  m.def(
      "bernoulli_noise(Tensor x0_packed, Tensor thresholds, int channels, Tensor stream, ScalarType? out_dtype, "
      "bool return_flip) -> (Tensor, Tensor, Tensor)");
  // scalars: float32 (7,) [inv_temp, g, k_prev, b_prev, qh, ql, final] on the op's device (final 1.0
  // on the threshold step). The 4th output is an int32 (1,) NaN flag; check_nan raises instead.
  m.def(
      "sample_step(Tensor logits, Tensor? uncond_logits, Tensor xt_packed, Tensor? mask, Tensor? known, "
      "Tensor scalars, Tensor stream, bool predict_flip, bool return_probs, ScalarType? out_dtype, bool check_nan) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def("binarize(Tensor logits, bool bernoulli, Tensor stream) -> Tensor");
  m.def("quantize_probs(Tensor logits) -> Tensor");
  m.def("flip_bce(Tensor logits, Tensor target_packed, Tensor pos_weight, Tensor neg_weight) -> (Tensor, Tensor)");
}
