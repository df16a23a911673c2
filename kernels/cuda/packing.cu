// pack_bits / unpack_bits: one thread per packed byte.
#include "bldm_fast/packing.h"
#include "device_utils.cuh"

namespace bldm_fast::cuda {
namespace {

__global__ void __launch_bounds__(kThreads) pack_kernel(const void* bits, DType dt, int64_t rows, int64_t channels,
                                                         uint8_t* packed, int* bad) {
  const int64_t nb = packed_size(channels), n_bytes = rows * nb;
  const bool floating = dt == DType::kF16 || dt == DType::kBF16 || dt == DType::kF32 || dt == DType::kF64;
  int any_bad = 0;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const auto [row, i0, nbits] = byte_span(g, nb, channels);
    uint8_t out = 0;
    for (int j = 0; j < nbits; ++j) {
      const float v = load_float(bits, dt, i0 + j);
      out |= static_cast<uint8_t>((v != 0.0f) << j);
      any_bad |= floating & (v != 0.0f) & (v != 1.0f);
    }
    packed[g] = out;
  }
  if (any_bad) atomicOr(bad, 1);
}

__global__ void __launch_bounds__(kThreads) unpack_kernel(const uint8_t* packed, int64_t rows, int64_t channels,
                                                           void* out, DType dt) {
  const int64_t nb = packed_size(channels), n_bytes = rows * nb;
  BLDM_FOR_EACH_BYTE(g, n_bytes) {
    const auto [row, i0, nbits] = byte_span(g, nb, channels);
    const uint8_t byte = packed[g];
    for (int j = 0; j < nbits; ++j) store_bit(out, dt, i0 + j, (byte >> j) & 1);
  }
}

}  // namespace

cudaError_t pack_bits(const void* bits, DType dtype, int64_t rows, int64_t channels, uint8_t* packed, int* bad,
                      cudaStream_t stream) {
  const int64_t n_bytes = rows * packed_size(channels);
  if (n_bytes == 0) return cudaSuccess;
  pack_kernel<<<grid_blocks(n_bytes), kThreads, 0, stream>>>(bits, dtype, rows, channels, packed, bad);
  return cudaGetLastError();
}

cudaError_t unpack_bits(const uint8_t* packed, int64_t rows, int64_t channels, void* out, DType dtype,
                        cudaStream_t stream) {
  const int64_t n_bytes = rows * packed_size(channels);
  if (n_bytes == 0) return cudaSuccess;
  unpack_kernel<<<grid_blocks(n_bytes), kThreads, 0, stream>>>(packed, rows, channels, out, dtype);
  return cudaGetLastError();
}

}  // namespace bldm_fast::cuda
