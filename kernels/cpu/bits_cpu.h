// Row-wise bit packing on the CPU, shared by the pack/unpack ops and the fused kernels: the loops of
// the path chosen at the first call (dispatch.h, isa/bits_loops.h).
#pragma once

#include <cstdint>

#include "dispatch.h"

namespace bldm_fast::cpu {

// rows x channels bytes (contiguous; any nonzero byte is a 1) -> rows x ceil(channels/8) packed
// bytes, padding bits 0.
inline void pack_rows(const uint8_t* bytes, int64_t rows, int64_t channels, uint8_t* packed) {
  kernels().pack_rows(bytes, rows, channels, packed);
}

// rows x ceil(channels/8) packed bytes -> rows x channels 0/1 bytes (contiguous).
inline void unpack_rows(const uint8_t* packed, int64_t rows, int64_t channels, uint8_t* ones) {
  kernels().unpack_rows(packed, rows, channels, ones);
}

// packed -> rows x channels floats 0.0/1.0.
inline void unpack_rows_float(const uint8_t* packed, int64_t rows, int64_t channels, float* out) {
  kernels().unpack_rows_float(packed, rows, channels, out);
}

}  // namespace bldm_fast::cpu
