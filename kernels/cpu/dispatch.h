// Runtime CPU dispatch: the table of hot loops (isa/kernel_table.h) of the path this CPU runs best,
// or of the path BLDM_FAST_CPU_CAPABILITY asks for, chosen once at the first call.
#pragma once

#include <string>
#include <vector>

#include "isa/kernel_table.h"

namespace bldm_fast::cpu {

// The loops of the path in use.
const KernelTable& kernels();

// The name of the path in use: "avx512", "avx2" or "default" (the only path of a BLDM_FAST_CPU_ARCH
// build, or of a non-x86 CPU).
std::string cpu_capability();

// Why BLDM_FAST_CPU_CAPABILITY was not followed (a path this CPU cannot run, or an unknown name),
// or "" when it was or is unset.
std::string cpu_capability_warning();

// The paths of this build that this CPU can run, best first (the last is always "default").
std::vector<std::string> cpu_capabilities();

}  // namespace bldm_fast::cpu
