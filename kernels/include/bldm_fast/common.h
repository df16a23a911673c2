// Portability macros shared by the C++ (CPU) and CUDA kernels. No torch headers here: the CUDA
// sources include this file too and must compile without ATen.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define BLDM_HD __host__ __device__ __forceinline__
#else
#define BLDM_HD inline __attribute__((always_inline))
#endif

namespace bldm_fast {

BLDM_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

}  // namespace bldm_fast
