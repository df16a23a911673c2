// Device helpers shared by the CUDA kernels: grid sizing, typed loads/stores and the words of the
// Philox stream for one packed byte's eight elements.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bldm_fast/philox.h"
#include "launchers.h"

namespace bldm_fast::cuda {

constexpr int kThreads = 256;

// Multiprocessors of the current device, read once per device.
inline int sm_count() {
  static int counts[64] = {};
  int device = 0;
  cudaGetDevice(&device);
  if (device < 0 || device >= 64) return 132;
  if (counts[device] == 0) cudaDeviceGetAttribute(&counts[device], cudaDevAttrMultiProcessorCount, device);
  return counts[device] > 0 ? counts[device] : 132;
}

// Blocks for a grid-stride loop over n items: enough to fill every SM 16 blocks deep, no more
// (the loop covers the rest).
inline int grid_blocks(int64_t n) {
  const int64_t want = (n + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 16;
  return static_cast<int>(want < 1 ? 1 : (want < cap ? want : cap));
}

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

// Calls launch(T{}) with T the C++ type of a logits dtype (float, __half, __nv_bfloat16), then
// returns the launch's error; other dtypes are cudaErrorInvalidValue.
template <typename Launch>
cudaError_t with_logits_type(DType dt, Launch&& launch) {
  switch (dt) {
    case DType::kF16: launch(__half{}); break;
    case DType::kBF16: launch(__nv_bfloat16{}); break;
    case DType::kF32: launch(float{}); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

// out[i] = bit (0/1) in dtype dt.
__device__ __forceinline__ void store_bit(void* p, DType dt, int64_t i, bool bit) {
  switch (dt) {
    case DType::kF16: static_cast<__half*>(p)[i] = __float2half(bit ? 1.0f : 0.0f); break;
    case DType::kBF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(bit ? 1.0f : 0.0f); break;
    case DType::kF32: static_cast<float*>(p)[i] = bit ? 1.0f : 0.0f; break;
    case DType::kF64: static_cast<double*>(p)[i] = bit ? 1.0 : 0.0; break;
    default: static_cast<uint8_t*>(p)[i] = bit; break;
  }
}

// Packed byte g of rows of `channels` bits (nb bytes a row): its row, first element and bit count.
struct ByteSpan {
  int64_t row, i0;
  int nbits;
};

// a / b for a, b >= 0. A 64-bit division is a long software routine on the GPU (it doubled the
// noise kernel's time on an H200); sizes past 2^32 take it, all others a 32-bit division.
__device__ __forceinline__ int64_t div_nonneg(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) return static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
  return a / b;
}

// kAligned (C % 8 == 0): byte g holds elements 8g .. 8g+7, and the compiler sees nbits == 8 and
// i0 % 8 == 0, which turns byte_words' word selection into static register picks.
template <bool kAligned = false>
__device__ __forceinline__ ByteSpan byte_span(int64_t g, int64_t nb, int64_t channels) {
  const int64_t row = div_nonneg(g, nb);
  if constexpr (kAligned) {
    return ByteSpan{row, 8 * g, 8};
  } else {
    const int64_t k = g - row * nb, left = channels - 8 * k;
    return ByteSpan{row, row * channels + 8 * k, left < 8 ? static_cast<int>(left) : 8};
  }
}

// Calls launch(std::true_type{}) when C % 8 == 0, else launch(std::false_type{}): the kAligned
// template argument of a kernel.
template <typename Launch>
void with_alignment(int64_t channels, Launch&& launch) {
  if (channels % 8 == 0) {
    launch(std::true_type{});
  } else {
    launch(std::false_type{});
  }
}

// Move the 8 * sizeof(T) bytes at p (aligned to min(16, 8 * sizeof(T))) as 16-byte vectors (one
// 8-byte vector for 1-byte T).
template <typename T>
__device__ __forceinline__ void load_vec8(const T* p, T* v) {
  if constexpr (sizeof(T) == 1) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    memcpy(v, &raw, 8);
  } else {
    constexpr int kChunks = sizeof(T) / 2;
    uint4 raw[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) raw[c] = reinterpret_cast<const uint4*>(p)[c];
    memcpy(v, raw, sizeof(raw));
  }
}

template <typename T>
__device__ __forceinline__ void store_vec8(T* p, const T* v) {
  if constexpr (sizeof(T) == 1) {
    uint2 raw;
    memcpy(&raw, v, 8);
    *reinterpret_cast<uint2*>(p) = raw;
  } else {
    constexpr int kChunks = sizeof(T) / 2;
    uint4 raw[kChunks];
    memcpy(raw, v, sizeof(raw));
#pragma unroll
    for (int c = 0; c < kChunks; ++c) reinterpret_cast<uint4*>(p)[c] = raw[c];
  }
}

// v[j] = p[i0 + j] as float for j < nbits (0 beyond); 16-byte loads where the byte holds 8
// channels at a 16-byte aligned address.
template <typename T>
__device__ __forceinline__ void load8(const T* p, int64_t i0, int nbits, float* v) {
  const T* q = p + i0;
  if (nbits == 8 && (reinterpret_cast<uintptr_t>(q) & 15) == 0) {
    T e[8];
    load_vec8(q, e);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = to_f(e[j]);
    return;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = j < nbits ? to_f(q[j]) : 0.0f;
}

// p[i0 + j] = v[j] in T for j < nbits; 16-byte stores where aligned as in load8.
template <typename T>
__device__ __forceinline__ void store8(T* p, int64_t i0, int nbits, const float* v) {
  T* q = p + i0;
  if (nbits == 8 && (reinterpret_cast<uintptr_t>(q) & 15) == 0) {
    T e[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) e[j] = from_f<T>(v[j]);
    store_vec8(q, e);
    return;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (j < nbits) q[j] = from_f<T>(v[j]);
  }
}

// The Philox words of elements i0 .. i0+7 (i0 = first element of a packed byte): word(j) is
// element i0 + j's, w[s + j] with s = i0 % 4. Two counters when the byte starts on a counter
// (C % 4 == 0), three otherwise. word(j) selects among static indices (j is unrolled), so w stays
// in registers: indexing w[s + j] directly put it on the stack (96 bytes a thread in ptxas -v).
struct ByteWords {
  uint32_t w[12];
  int s;

  __device__ __forceinline__ uint32_t word(int j) const {
    return s == 0 ? w[j] : s == 1 ? w[j + 1] : s == 2 ? w[j + 2] : w[j + 3];
  }
};

__device__ __forceinline__ ByteWords byte_words(uint64_t seed, uint64_t offset, int64_t i0, int nbits) {
  ByteWords out;
  out.s = static_cast<int>(i0 & 3);
  const uint64_t n0 = offset + static_cast<uint64_t>(i0 >> 2);
  const int counters = (out.s + nbits + 3) / 4;
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    if (c < counters) {
      const PhiloxWords p = philox4x32_10(seed, n0 + c);
#pragma unroll
      for (int k = 0; k < 4; ++k) out.w[4 * c + k] = p.w[k];
    }
  }
  return out;
}

// Grid-stride loop over packed bytes g: row = g / nb, first channel 8 * (g % nb).
#define BLDM_FOR_EACH_BYTE(g, n_bytes)                                                          \
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < (n_bytes); \
       g += static_cast<int64_t>(gridDim.x) * blockDim.x)

}  // namespace bldm_fast::cuda
