// pack_bits / unpack_bits: one thread per packed byte. Where each byte covers 8 whole channels
// (C % 8 == 0) and the unpacked side is 16-byte aligned, a byte's 8 elements move as 16-byte
// vectors (8 bytes for 1-byte dtypes); otherwise element by element.
#include "bldm_fast/packing.h"
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

__device__ __forceinline__ double as_double(double x) { return x; }
__device__ __forceinline__ double as_double(float x) { return x; }
__device__ __forceinline__ double as_double(__half x) { return __half2float(x); }
__device__ __forceinline__ double as_double(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ double as_double(uint8_t x) { return x; }

template <typename T>
__global__ void __launch_bounds__(kThreads) pack_kernel(const T* bits, int64_t rows, int64_t channels, bool vec,
                                                         uint8_t* packed, int* bad) {
  constexpr bool kFloating = !std::is_same_v<T, uint8_t>;
  const int64_t nb = packed_size(channels), n_bytes = rows * nb;
  int any_bad = 0;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    T v[8];
    int nbits = 8;
    if (vec) {
      load_vec8(bits + 8 * g, v);
    } else {
      const auto span = byte_span(g, nb, channels);
      nbits = span.nbits;
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = j < nbits ? bits[span.i0 + j] : T{};
    }
    uint8_t out = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < nbits) {
        const double x = as_double(v[j]);
        out |= static_cast<uint8_t>((x != 0.0) << j);
        if constexpr (kFloating) any_bad |= (x != 0.0) & (x != 1.0);
      }
    }
    packed[g] = out;
  }
  if (any_bad) atomicOr(bad, 1);
}

// Unpacked elements are written as the integer bit patterns of 0 and `one` (1 in the output dtype).
template <typename U>
__global__ void __launch_bounds__(kThreads) unpack_kernel(const uint8_t* packed, int64_t rows, int64_t channels,
                                                           bool vec, U* out, U one) {
  const int64_t nb = packed_size(channels), n_bytes = rows * nb;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const uint8_t byte = packed[g];
    U v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ((byte >> j) & 1) ? one : U{0};
    if (vec) {
      store_vec8(out + 8 * g, v);
    } else {
      const auto span = byte_span(g, nb, channels);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j < span.nbits) out[span.i0 + j] = v[j];
    }
  }
}

// The aligned unpack of 2- to 8-byte dtypes, one thread per 16-byte chunk of the output
// (16 / sizeof(U) elements, part of one packed byte): consecutive threads store consecutive
// chunks, so each warp store is fully coalesced (a thread per byte storing 32 bytes ran at half
// the bandwidth for float32 on an H200).
template <typename U>
__global__ void __launch_bounds__(kThreads) unpack_chunks_kernel(const uint8_t* packed, int64_t n_chunks, U* out,
                                                                  U one) {
  constexpr int kPer = 16 / sizeof(U);
  static_assert(kPer >= 2 && kPer <= 8, "chunks of 2 to 8 elements");
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n_chunks;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e0 = c * kPer;
    const unsigned bits = packed[e0 >> 3] >> (e0 & 7);
    U v[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) v[j] = ((bits >> j) & 1) ? one : U{0};
    uint4 raw;
    memcpy(&raw, v, 16);
    reinterpret_cast<uint4*>(out)[c] = raw;
  }
}

// Whether byte g's 8 elements start at p + 8 * g * size, aligned for load_vec8 / store_vec8.
bool vectorizable(const void* p, int64_t channels, int size) {
  const uintptr_t align = size == 1 ? 8 : 16;
  return channels % 8 == 0 && reinterpret_cast<uintptr_t>(p) % align == 0;
}

template <typename T>
void launch_pack(const void* bits, int64_t rows, int64_t channels, uint8_t* packed, int* bad, cudaStream_t stream) {
  const int64_t n_bytes = rows * packed_size(channels);
  pack_kernel<T><<<grid_blocks(n_bytes), kThreads, 0, stream>>>(
      static_cast<const T*>(bits), rows, channels, vectorizable(bits, channels, sizeof(T)), packed, bad);
}

template <typename U>
void launch_unpack(const uint8_t* packed, int64_t rows, int64_t channels, void* out, U one, cudaStream_t stream) {
  const int64_t n_bytes = rows * packed_size(channels);
  if constexpr (sizeof(U) > 1) {
    if (vectorizable(out, channels, sizeof(U))) {
      const int64_t n_chunks = n_bytes * 8 * static_cast<int64_t>(sizeof(U)) / 16;
      unpack_chunks_kernel<U><<<grid_blocks(n_chunks), kThreads, 0, stream>>>(packed, n_chunks, static_cast<U*>(out),
                                                                              one);
      return;
    }
  }
  unpack_kernel<U><<<grid_blocks(n_bytes), kThreads, 0, stream>>>(
      packed, rows, channels, vectorizable(out, channels, sizeof(U)), static_cast<U*>(out), one);
}

}  // namespace

cudaError_t pack_bits(const void* bits, DType dtype, int64_t rows, int64_t channels, uint8_t* packed, int* bad,
                      cudaStream_t stream) {
  if (rows * packed_size(channels) == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kF16: launch_pack<__half>(bits, rows, channels, packed, bad, stream); break;
    case DType::kBF16: launch_pack<__nv_bfloat16>(bits, rows, channels, packed, bad, stream); break;
    case DType::kF32: launch_pack<float>(bits, rows, channels, packed, bad, stream); break;
    case DType::kF64: launch_pack<double>(bits, rows, channels, packed, bad, stream); break;
    default: launch_pack<uint8_t>(bits, rows, channels, packed, bad, stream); break;
  }
  return cudaGetLastError();
}

cudaError_t unpack_bits(const uint8_t* packed, int64_t rows, int64_t channels, void* out, DType dtype,
                        cudaStream_t stream) {
  if (rows * packed_size(channels) == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kF16: launch_unpack<uint16_t>(packed, rows, channels, out, 0x3C00, stream); break;
    case DType::kBF16: launch_unpack<uint16_t>(packed, rows, channels, out, 0x3F80, stream); break;
    case DType::kF32: launch_unpack<uint32_t>(packed, rows, channels, out, 0x3F800000u, stream); break;
    case DType::kF64: launch_unpack<uint64_t>(packed, rows, channels, out, 0x3FF0000000000000ull, stream); break;
    default: launch_unpack<uint8_t>(packed, rows, channels, out, 1, stream); break;
  }
  return cudaGetLastError();
}

}  // namespace bldm_fast::cuda
