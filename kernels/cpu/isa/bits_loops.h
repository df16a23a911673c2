// Row-wise bit packing (DESIGN.md section 2) for one path; included once by each isa/*.cpp (see
// philox_loops.h for the macros).
#pragma once

#include <cstdint>
#include <cstring>

#include "bldm_fast/packing.h"

#if defined(BLDM_CPU_AVX512) || defined(BLDM_CPU_AVX2)
#include <immintrin.h>
#endif

namespace bldm_fast::cpu::BLDM_CPU_ISA {
namespace {

// byte b -> its 8 bits as 0/1, LSB first, as bytes and as floats.
struct SpreadTables {
  uint64_t bytes[256];
  float floats[256][8];
};

// constexpr: the tables are constant-initialised. An AVX-512 translation unit must run no code
// when the library loads (a dynamic initialiser there would be a SIGILL on other CPUs).
constexpr SpreadTables make_tables() {
  SpreadTables t{};
  for (int b = 0; b < 256; ++b) {
    t.bytes[b] = 0;
    for (int j = 0; j < 8; ++j) {
      t.bytes[b] |= static_cast<uint64_t>((b >> j) & 1) << (8 * j);
      t.floats[b][j] = static_cast<float>((b >> j) & 1);
    }
  }
  return t;
}

constexpr SpreadTables kSpread = make_tables();

// 1 in byte j's lowest bit where byte j of v is nonzero, else 0.
inline uint64_t nonzero_ones(uint64_t v) {
  const uint64_t low7 = 0x7F7F7F7F7F7F7F7Full;
  return ((((v & low7) + low7) | v) >> 7) & 0x0101010101010101ull;
}

// n_out whole bytes from 8 * n_out input bytes. The vector loops take a mask of the nonzero input
// bytes, whose bit j is byte j's test: exactly the LSB-first layout.
void pack_full_bytes(const uint8_t* in, int64_t n_out, uint8_t* out) {
  int64_t k = 0;
#if defined(BLDM_CPU_AVX512)
  for (; k + 8 <= n_out; k += 8) {  // 64 input bytes -> 8 packed bytes
    const __m512i v = _mm512_loadu_si512(in + 8 * k);
    const uint64_t m = _mm512_test_epi8_mask(v, v);
    std::memcpy(out + k, &m, 8);
  }
#endif
#if defined(BLDM_CPU_AVX512) || defined(BLDM_CPU_AVX2)
  const __m256i zero = _mm256_setzero_si256();
  for (; k + 4 <= n_out; k += 4) {  // 32 input bytes -> 4 packed bytes
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 8 * k));
    const uint32_t m = ~static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero)));
    std::memcpy(out + k, &m, 4);
  }
#endif
  for (; k < n_out; ++k) {
    uint64_t v;
    std::memcpy(&v, in + 8 * k, 8);
    out[k] = pack8_from_u64(nonzero_ones(v));
  }
}

uint8_t pack_partial_byte(const uint8_t* in, int64_t n_bits) {
  uint8_t byte = 0;
  for (int64_t j = 0; j < n_bits; ++j) byte |= static_cast<uint8_t>((in[j] != 0) << j);
  return byte;
}

void pack_rows(const uint8_t* bytes, int64_t rows, int64_t channels, uint8_t* packed) {
  if (channels % 8 == 0) {
    pack_full_bytes(bytes, rows * channels / 8, packed);
    return;
  }
  const int64_t full = channels / 8, nb = full + 1;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = bytes + r * channels;
    uint8_t* out = packed + r * nb;
    pack_full_bytes(in, full, out);
    out[full] = pack_partial_byte(in + 8 * full, channels - 8 * full);
  }
}

void unpack_rows(const uint8_t* packed, int64_t rows, int64_t channels, uint8_t* ones) {
  if (channels % 8 == 0) {
    const int64_t n = rows * channels / 8;
    for (int64_t k = 0; k < n; ++k) std::memcpy(ones + 8 * k, &kSpread.bytes[packed[k]], 8);
    return;
  }
  const int64_t full = channels / 8, nb = full + 1;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = packed + r * nb;
    uint8_t* out = ones + r * channels;
    for (int64_t k = 0; k < full; ++k) std::memcpy(out + 8 * k, &kSpread.bytes[in[k]], 8);
    for (int64_t c = 8 * full; c < channels; ++c) out[c] = bit_of(in, c);
  }
}

void unpack_rows_float(const uint8_t* packed, int64_t rows, int64_t channels, float* out) {
  if (channels % 8 == 0) {
    const int64_t n = rows * channels / 8;
    for (int64_t k = 0; k < n; ++k) std::memcpy(out + 8 * k, kSpread.floats[packed[k]], 32);
    return;
  }
  const int64_t full = channels / 8, nb = full + 1;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = packed + r * nb;
    float* o = out + r * channels;
    for (int64_t k = 0; k < full; ++k) std::memcpy(o + 8 * k, kSpread.floats[in[k]], 32);
    for (int64_t c = 8 * full; c < channels; ++c) o[c] = static_cast<float>(bit_of(in, c));
  }
}

}  // namespace
}  // namespace bldm_fast::cpu::BLDM_CPU_ISA
