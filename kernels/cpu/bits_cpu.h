// Row-wise bit packing on the CPU, shared by the pack/unpack ops and the fused kernels.
#pragma once

#include <cstdint>

namespace bldm_fast::cpu {

// rows x channels bytes (contiguous; any nonzero byte is a 1) -> rows x ceil(channels/8) packed
// bytes, padding bits 0.
void pack_rows(const uint8_t* bytes, int64_t rows, int64_t channels, uint8_t* packed);

// rows x ceil(channels/8) packed bytes -> rows x channels 0/1 bytes (contiguous).
void unpack_rows(const uint8_t* packed, int64_t rows, int64_t channels, uint8_t* ones);

// packed -> rows x channels floats 0.0/1.0.
void unpack_rows_float(const uint8_t* packed, int64_t rows, int64_t channels, float* out);

}  // namespace bldm_fast::cpu
