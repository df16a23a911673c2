// Philox4x32-10 (Random123), the random stream of DESIGN.md section 4: key = (seed lo, seed hi),
// counter = (n lo, n hi, 0, 0) for n = offset + i / 4, element i takes word i % 4. The same
// round function, constants and key schedule as Triton's tl.randint4x.
#pragma once

#include "common.h"

namespace bldm_fast {

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u;
constexpr uint32_t kPhiloxRoundB = 0xCD9E8D57u;
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u;
constexpr uint32_t kPhiloxKeyB = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

struct PhiloxWords {
  uint32_t w[4];
};

// The four output words of counter n (64-bit) under key seed (64-bit).
BLDM_HD PhiloxWords philox4x32_10(uint64_t seed, uint64_t n) {
  uint32_t c0 = static_cast<uint32_t>(n), c1 = static_cast<uint32_t>(n >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
  for (int r = 0; r < kPhiloxRounds; ++r) {
    const uint64_t pa = static_cast<uint64_t>(kPhiloxRoundA) * c0;
    const uint64_t pb = static_cast<uint64_t>(kPhiloxRoundB) * c2;
    const uint32_t n0 = static_cast<uint32_t>(pb >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(pa >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(pb);
    c3 = static_cast<uint32_t>(pa);
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  return PhiloxWords{{c0, c1, c2, c3}};
}

// (word >> 8) * 2^-24: exact in float32, in [0, 1 - 2^-24].
BLDM_HD float word_to_uniform(uint32_t word) {
  return static_cast<float>(word >> 8) * 5.9604644775390625e-08f;
}

}  // namespace bldm_fast
