// Bit layout of DESIGN.md section 2: bit j of byte k holds channel 8k + j (LSB first), padding
// bits of the last byte are 0.
#pragma once

#include "common.h"

namespace bldm_fast {

BLDM_HD int64_t packed_size(int64_t channels) { return (channels + 7) / 8; }

// Eight 0/1 bytes (byte j = channel j, little-endian load) -> one packed byte. The multiply
// gathers byte j's low bit into bit 56 + j; no partial product reaches bits 56..63 otherwise.
BLDM_HD uint8_t pack8_from_u64(uint64_t ones) {
  return static_cast<uint8_t>((ones * 0x0102040810204080ull) >> 56);
}

BLDM_HD uint8_t bit_of(const uint8_t* row, int64_t c) {
  return static_cast<uint8_t>((row[c >> 3] >> (c & 7)) & 1u);
}

}  // namespace bldm_fast
