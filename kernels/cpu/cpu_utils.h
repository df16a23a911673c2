// Helpers shared by the CPU kernels: tiling, dtype loads and typed stores.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "bldm_fast/common.h"
#include "dispatch.h"


namespace bldm_fast::cpu {

// Elements per tile: the per-tile scratch (uniforms, logits, bits) stays in L1/L2 and the
// Philox, step and packing loops each run over one tile at a time.
constexpr int64_t kTileElems = 4096;

// Rows per tile for rows of `channels` elements (at least one row).
inline int64_t rows_per_tile(int64_t channels) {
  return std::max<int64_t>(1, kTileElems / std::max<int64_t>(channels, 1));
}

// The least work worth a second thread: an op over at most this many elements runs on the calling
// thread, a larger one gives each thread at least this many. Measured with the step (B x 256 x 64
// fp32 logits, 2-core AMD EPYC, 2 threads, median / mean per call): on an idle machine two threads
// save 1.8x from B=8 (131K elements, 404 -> 222 us), but while another process holds the second core
// every threaded call can wait a scheduler slice for it: at B=1-8 the mean became 2.4-7.3 ms against
// 0.06-0.4 ms on one thread, while from B=16 the threaded mean is no worse (B=16 1.6 vs 1.6 ms, B=64
// 4.5 vs 7.5 ms). The cheaper ops (packing, noise) gain even less from a thread.
constexpr int64_t kMinParallelElems = int64_t{1} << 17;

// The at::parallel_for grain, in tiles of tile_elems elements, that gives each thread at least
// kMinParallelElems elements (a range of at most that many tiles runs on the calling thread).
inline int64_t grain_tiles(int64_t tile_elems) {
  return std::max<int64_t>(1, (kMinParallelElems + tile_elems - 1) / std::max<int64_t>(tile_elems, 1));
}

// Runs f(row_begin, row_end) over tiles of rows, in parallel across tiles (see kMinParallelElems).
template <typename F>
void for_row_tiles(int64_t rows, int64_t channels, F&& f) {
  const int64_t tile = rows_per_tile(channels);
  const int64_t tiles = (rows + tile - 1) / tile;
  at::parallel_for(0, tiles, grain_tiles(tile * channels), [&](int64_t t0, int64_t t1) {
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

// The FloatType of a float32/float16/bfloat16/float64 tensor, for the loops of isa/.
inline FloatType float_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return FloatType::kFloat32;
    case at::kHalf: return FloatType::kFloat16;
    case at::kBFloat16: return FloatType::kBFloat16;
    case at::kDouble: return FloatType::kFloat64;
    default: TORCH_CHECK(false, "bldm_fast: no float loops for ", t);
  }
}

// The address of element i of contiguous t.
inline const void* element_ptr(const at::Tensor& t, int64_t i) {
  return static_cast<const char*>(t.const_data_ptr()) + i * t.element_size();
}
inline void* element_ptr(at::Tensor& t, int64_t i) {
  return static_cast<char*>(t.mutable_data_ptr()) + i * t.element_size();
}

// l[j] = float(t[i0 + j]) for j < n, t contiguous float32/float16/bfloat16.
inline void load_floats(const at::Tensor& t, int64_t i0, int64_t n, float* l) {
  kernels().load_floats(element_ptr(t, i0), float_type(t.scalar_type()), n, l);
}

// t[i0 + j] = g[j] for j < n, t contiguous float32/float16/bfloat16.
inline void store_floats(const float* g, int64_t i0, int64_t n, at::Tensor& t) {
  kernels().store_floats(g, n, float_type(t.scalar_type()), element_ptr(t, i0));
}

// out[j] = ones[j] (0/1) in out's dtype, for j < n, starting at element `first` of out.
inline void store_ones(const uint8_t* ones, int64_t n, at::Tensor& out, int64_t first) {
  if (out.scalar_type() == at::kFloat) {
    kernels().ones_to_floats(ones, n, out.mutable_data_ptr<float>() + first);
    return;
  }
  AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, out.scalar_type(), "store_ones", [&] {
    scalar_t* o = out.mutable_data_ptr<scalar_t>() + first;
    for (int64_t j = 0; j < n; ++j) o[j] = static_cast<scalar_t>(ones[j]);
  });
}

}  // namespace bldm_fast::cpu
