// Runtime CPU dispatch, as ATen picks its CPU capability: the default build compiles the hot loops
// three times (isa/avx512.cpp, avx2.cpp, baseline.cpp) and the first call picks the best path the
// CPU runs. BLDM_FAST_CPU_CAPABILITY=avx2|default (like ATEN_CPU_CAPABILITY) forces a lower path;
// a path this CPU or build lacks, or an unknown name, runs the best path instead (never an illegal
// instruction) and cpu_capability_warning() says why, which bldm_fast._native gives as a Python
// warning at import (a TORCH_WARN here would reach stderr only). The ops bldm_fast::cpu_capability()
// and cpu_capabilities() report the choice (bldm_fast._native.native_info(), `bldm-fast env`).
#include "dispatch.h"

#include <c10/util/StringUtil.h>
#include <torch/library.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace bldm_fast::cpu {
namespace {

struct Path {
  const char* name;
  const KernelTable* table;
  const char* needs;  // the CPU features the path needs, for the warning
  bool (*runs)();     // whether this CPU has them (and the OS saves their registers)
};

#if defined(__x86_64__) && !defined(BLDM_FAST_CPU_SINGLE_PATH)
// __builtin_cpu_supports checks CPUID and, for AVX and AVX-512, that the OS saves the registers.
bool runs_x86_64_v4() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v4");
}
bool runs_x86_64_v3() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v3");
}
#endif
bool runs_always() { return true; }

const Path kPaths[] = {
#if defined(__x86_64__) && !defined(BLDM_FAST_CPU_SINGLE_PATH)
    {"avx512", &cpu_avx512::kTable, "x86-64-v4: avx512f, avx512bw, avx512cd, avx512dq, avx512vl", runs_x86_64_v4},
    {"avx2", &cpu_avx2::kTable, "x86-64-v3: avx2, fma, f16c, bmi1, bmi2, lzcnt, movbe", runs_x86_64_v3},
#endif
    {"default", &cpu_baseline::kTable, "nothing", runs_always},
};

const char* const kVariable = "BLDM_FAST_CPU_CAPABILITY";

std::string known_names() {
  std::string s;
  for (const Path& p : kPaths) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

// Why BLDM_FAST_CPU_CAPABILITY was not followed ("" when it was, or is unset).
struct Choice {
  const Path* path;
  std::string warning;
};

Choice choose() {
  const Path* best = nullptr;
  for (const Path& p : kPaths) {
    if (p.runs()) {
      best = &p;
      break;
    }
  }
  const char* env = std::getenv(kVariable);
  if (env == nullptr || *env == '\0') return {best, ""};
  std::string want(env);
  std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const Path& p : kPaths) {
    if (want != p.name) continue;
    if (p.runs()) return {&p, ""};
    return {best, c10::str(kVariable, "=", env, " asks for a path this CPU cannot run (it needs ", p.needs,
                           "); using ", best->name, " instead")};
  }
  return {best, c10::str(kVariable, "=", env, " is not a CPU path of this build (", known_names(),
                         "; a BLDM_FAST_CPU_ARCH build has only default); using ", best->name, " instead")};
}

const Choice& chosen() {
  static const Choice choice = choose();  // thread-safe, once per process
  return choice;
}

const Path& selected() { return *chosen().path; }

}  // namespace

const KernelTable& kernels() { return *selected().table; }

std::string cpu_capability() { return selected().name; }

std::string cpu_capability_warning() { return chosen().warning; }

std::vector<std::string> cpu_capabilities() {
  std::vector<std::string> names;
  for (const Path& p : kPaths)
    if (p.runs()) names.emplace_back(p.name);
  return names;
}

TORCH_LIBRARY_FRAGMENT(bldm_fast, m) {
  m.def("cpu_capability() -> str", &cpu_capability);
  m.def("cpu_capabilities() -> str[]", &cpu_capabilities);
  m.def("cpu_capability_warning() -> str", &cpu_capability_warning);
}

}  // namespace bldm_fast::cpu
