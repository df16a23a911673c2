// The Philox stream over a range of flat element indices, on the CPU.
#pragma once

#include <cstdint>

namespace bldm_fast::cpu {

// u[j] = uniform of element i0 + j (j < n) of the stream (seed, offset), DESIGN.md section 4.
void uniform_range(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, float* u);

// w[j] = Philox word of element i0 + j (j < n).
void words_range(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, uint32_t* w);

}  // namespace bldm_fast::cpu
