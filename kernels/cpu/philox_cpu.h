// The Philox stream over a range of flat element indices, on the CPU: the loops of the path chosen
// at the first call (dispatch.h, isa/philox_loops.h).
#pragma once

#include <cstdint>

#include "dispatch.h"

namespace bldm_fast::cpu {

// u[j] = uniform of element i0 + j (j < n) of the stream (seed, offset), DESIGN.md section 4.
inline void uniform_range(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, float* u) {
  kernels().uniform_range(seed, offset, i0, n, u);
}

// w[j] = Philox word of element i0 + j (j < n).
inline void words_range(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, uint32_t* w) {
  kernels().words_range(seed, offset, i0, n, w);
}

}  // namespace bldm_fast::cpu
