#include "philox_cpu.h"

#include <algorithm>

#include "bldm_fast/philox.h"
#include "cpu_utils.h"

namespace bldm_fast::cpu {
namespace {

constexpr int64_t kCountersPerBlock = 256;

// Words of counters first .. first + nc - 1, four per counter, in element order. The counter
// loop is what the compiler vectorises: ten rounds of 32x32->64 multiplies across lanes.
void philox_block(uint64_t seed, uint64_t first, int64_t nc, uint32_t* __restrict w) {
  for (int64_t j = 0; j < nc; ++j) {
    const PhiloxWords r = philox4x32_10(seed, first + static_cast<uint64_t>(j));
    w[4 * j + 0] = r.w[0];
    w[4 * j + 1] = r.w[1];
    w[4 * j + 2] = r.w[2];
    w[4 * j + 3] = r.w[3];
  }
}

void words_to_uniform(const uint32_t* __restrict w, int64_t n, float* __restrict u) {
  for (int64_t j = 0; j < n; ++j) u[j] = word_to_uniform(w[j]);
}

// Calls f(words, j0, count) for consecutive pieces of the element range [i0, i0 + n): words[k]
// is the word of element i0 + j0 + k.
template <typename F>
void for_word_blocks(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, F&& f) {
  uint32_t w[4 * kCountersPerBlock];
  int64_t j0 = 0;
  while (j0 < n) {
    const int64_t i = i0 + j0;
    const int64_t skip = i % 4;
    const int64_t count = std::min<int64_t>(n - j0, 4 * kCountersPerBlock - skip);
    const int64_t nc = (skip + count + 3) / 4;
    philox_block(seed, offset + static_cast<uint64_t>(i / 4), nc, w);
    f(w + skip, j0, count);
    j0 += count;
  }
}

}  // namespace

void uniform_range(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, float* u) {
  for_word_blocks(seed, offset, i0, n, [&](const uint32_t* w, int64_t j0, int64_t count) {
    words_to_uniform(w, count, u + j0);
  });
}

void words_range(uint64_t seed, uint64_t offset, int64_t i0, int64_t n, uint32_t* out) {
  for_word_blocks(seed, offset, i0, n, [&](const uint32_t* w, int64_t j0, int64_t count) {
    std::copy(w, w + count, out + j0);
  });
}

}  // namespace bldm_fast::cpu
