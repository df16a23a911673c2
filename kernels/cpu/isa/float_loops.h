// Loads and stores of float32/float16/bfloat16 buffers as float32, for one path; included once by
// each isa/*.cpp (see philox_loops.h for the macros). The conversions round exactly as c10::Half
// and c10::BFloat16 do (round to nearest even; NaN -> the sign and a quiet NaN).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernel_table.h"

namespace bldm_fast::cpu::BLDM_CPU_ISA {
namespace {

inline float half_to_float(uint16_t h) {
  _Float16 x;  // vcvtph2ps where the path has F16C, libgcc's exact conversion otherwise
  std::memcpy(&x, &h, 2);
  return static_cast<float>(x);
}

inline uint16_t float_to_half(float f) {
  const _Float16 x = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &x, 2);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t nan = static_cast<uint16_t>((u >> 16) & 0x8000u) | 0x7E00u;
  return f != f ? nan : h;
}

inline float bfloat16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16;
  return f != f ? static_cast<uint16_t>(0x7FC0u) : static_cast<uint16_t>(rounded);
}

// f(j, value of element j) over j < n of a float32/float16/bfloat16/float64 buffer; the switch is
// outside the loop, so each case vectorises on its own.
template <typename F>
void for_each_float(const void* in, FloatType type, int64_t n, F&& f) {
  switch (type) {
    case FloatType::kFloat32: {
      const float* __restrict p = static_cast<const float*>(in);
      for (int64_t j = 0; j < n; ++j) f(j, p[j]);
      break;
    }
    case FloatType::kFloat16: {
      const uint16_t* __restrict p = static_cast<const uint16_t*>(in);
      for (int64_t j = 0; j < n; ++j) f(j, half_to_float(p[j]));
      break;
    }
    case FloatType::kBFloat16: {
      const uint16_t* __restrict p = static_cast<const uint16_t*>(in);
      for (int64_t j = 0; j < n; ++j) f(j, bfloat16_to_float(p[j]));
      break;
    }
    case FloatType::kFloat64: {
      const double* __restrict p = static_cast<const double*>(in);
      for (int64_t j = 0; j < n; ++j) f(j, static_cast<float>(p[j]));
      break;
    }
  }
}

void load_floats(const void* in, FloatType type, int64_t n, float* __restrict out) {
  for_each_float(in, type, n, [&](int64_t j, float v) { out[j] = v; });
}

void store_floats(const float* __restrict in, int64_t n, FloatType type, void* out) {
  switch (type) {
    case FloatType::kFloat32: {
      float* __restrict o = static_cast<float*>(out);
      for (int64_t j = 0; j < n; ++j) o[j] = in[j];
      break;
    }
    case FloatType::kFloat16: {
      uint16_t* __restrict o = static_cast<uint16_t*>(out);
      for (int64_t j = 0; j < n; ++j) o[j] = float_to_half(in[j]);
      break;
    }
    case FloatType::kBFloat16: {
      uint16_t* __restrict o = static_cast<uint16_t*>(out);
      for (int64_t j = 0; j < n; ++j) o[j] = float_to_bfloat16(in[j]);
      break;
    }
    case FloatType::kFloat64: {
      double* __restrict o = static_cast<double*>(out);
      for (int64_t j = 0; j < n; ++j) o[j] = in[j];
      break;
    }
  }
}

void ones_to_floats(const uint8_t* __restrict ones, int64_t n, float* __restrict out) {
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(ones[j]);
}

bool floats_to_ones(const void* in, FloatType type, int64_t n, uint8_t* __restrict ones) {
  int bad = 0;  // an int: gcc 12 does not vectorise a bool OR-reduction
  for_each_float(in, type, n, [&](int64_t j, float v) {
    ones[j] = v != 0.0f;
    bad |= (v != 0.0f) & (v != 1.0f);
  });
  return bad != 0;
}

}  // namespace
}  // namespace bldm_fast::cpu::BLDM_CPU_ISA
