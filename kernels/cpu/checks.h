// Input validation at the C++ boundary, for callers of torch.ops.bldm_fast.* that bypass the
// Python checks. TORCH_CHECK_TYPE raises TypeError, TORCH_CHECK_VALUE raises ValueError.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

#include "bldm_fast/packing.h"

namespace bldm_fast::cpu {

inline void check_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor for the cpu backend, got ",
                    t.device());
}

// `name` is uint8 with shape leading + [ceil(channels / 8)].
inline void check_packed(const at::Tensor& t, const char* op, const char* name, at::IntArrayRef leading,
                         int64_t channels) {
  check_cpu(t, op, name);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kByte, op, ": ", name, " must be uint8 packed bits, got ",
                   t.scalar_type());
  std::vector<int64_t> want(leading.begin(), leading.end());
  want.push_back(packed_size(channels));
  TORCH_CHECK_VALUE(t.sizes().vec() == want, op, ": ", name, " must have shape ", at::IntArrayRef(want),
                    " (ceil(", channels, " / 8) bytes per row), got ", t.sizes());
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

}  // namespace bldm_fast::cpu
