// Helpers shared by the CPU kernels: tiling, dtype loads and typed stores.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "bldm_fast/common.h"


namespace bldm_fast::cpu {

// Elements per tile: the per-tile scratch (uniforms, logits, bits) stays in L1/L2 and the
// Philox, step and packing loops each run over one tile at a time.
constexpr int64_t kTileElems = 4096;

// Rows per tile for rows of `channels` elements (at least one row).
inline int64_t rows_per_tile(int64_t channels) {
  return std::max<int64_t>(1, kTileElems / std::max<int64_t>(channels, 1));
}

// Runs f(row_begin, row_end) over tiles of rows, in parallel across tiles.
template <typename F>
void for_row_tiles(int64_t rows, int64_t channels, F&& f) {
  const int64_t tile = rows_per_tile(channels);
  const int64_t tiles = (rows + tile - 1) / tile;
  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) f(t * tile, std::min(rows, (t + 1) * tile));
  });
}

// Uninitialised per-thread scratch of at least n elements of T, one buffer per Slot, reused across
// tiles and calls: a thread works on one tile at a time. (Zero-filled std::vectors per tile cost
// ~30% of the step at B=64, L=256, C=64.)
template <typename T, int Slot>
T* scratch(int64_t n) {
  thread_local std::unique_ptr<T[]> buf;
  thread_local int64_t capacity = 0;
  if (capacity < n) {
    buf.reset(new T[n]);
    capacity = n;
  }
  return buf.get();
}

inline float to_float(float x) { return x; }
inline float to_float(c10::Half x) { return static_cast<float>(x); }
inline float to_float(c10::BFloat16 x) { return static_cast<float>(x); }

}  // namespace bldm_fast::cpu

namespace bldm_fast::cpu {

// Runs f(scalar_t{}) for the C++ type of a float32/float16/bfloat16 tensor (logits).
#define BLDM_DISPATCH_LOGITS(dtype, name, ...)                                   \
  AT_DISPATCH_SWITCH(dtype, name, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)      \
                                      AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)   \
                                      AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

// l[j] = float(t[i0 + j]) for j < n, t contiguous float32/float16/bfloat16.
inline void load_floats(const at::Tensor& t, int64_t i0, int64_t n, float* __restrict l) {
  BLDM_DISPATCH_LOGITS(t.scalar_type(), "load_floats", [&] {
    const scalar_t* __restrict in = t.data_ptr<scalar_t>() + i0;
    for (int64_t j = 0; j < n; ++j) l[j] = to_float(in[j]);
  });
}

// t[i0 + j] = g[j] for j < n, t contiguous float32/float16/bfloat16.
inline void store_floats(const float* __restrict g, int64_t i0, int64_t n, at::Tensor& t) {
  BLDM_DISPATCH_LOGITS(t.scalar_type(), "store_floats", [&] {
    scalar_t* __restrict out = t.data_ptr<scalar_t>() + i0;
    for (int64_t j = 0; j < n; ++j) out[j] = static_cast<scalar_t>(g[j]);
  });
}

// out[j] = ones[j] (0/1) in out's dtype, for j < n, starting at element `first` of out.
inline void store_ones(const uint8_t* ones, int64_t n, at::Tensor& out, int64_t first) {
  AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, out.scalar_type(), "store_ones", [&] {
    scalar_t* o = out.data_ptr<scalar_t>() + first;
    for (int64_t j = 0; j < n; ++j) o[j] = static_cast<scalar_t>(ones[j]);
  });
}

}  // namespace bldm_fast::cpu
