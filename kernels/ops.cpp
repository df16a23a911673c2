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
  m.def("philox_fill_(Tensor(a!) out, int seed, int offset) -> ()");
  m.def(
      "bernoulli_noise(Tensor x0_packed, Tensor thresholds, int channels, int seed, int offset, "
      "ScalarType? out_dtype, bool return_flip) -> (Tensor, Tensor, Tensor)");
  m.def(
      "sample_step(Tensor logits, Tensor? uncond_logits, Tensor xt_packed, Tensor? mask, Tensor? known, "
      "float inv_temp, float g, float k_prev, float b_prev, float qh, float ql, bool final_step, "
      "bool predict_flip, int seed, int offset, bool return_probs, ScalarType? out_dtype) "
      "-> (Tensor, Tensor, Tensor)");
  m.def("binarize(Tensor logits, bool bernoulli, int seed, int offset) -> Tensor");
  m.def("quantize_probs(Tensor logits) -> Tensor");
  m.def("flip_bce(Tensor logits, Tensor target_packed, Tensor pos_weight, Tensor neg_weight) -> (Tensor, Tensor)");
}
