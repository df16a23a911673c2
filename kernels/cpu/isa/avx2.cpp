// The CPU loops compiled for AVX2 (x86-64-v3: AVX2, FMA, F16C, BMI1/2, MOVBE), chosen at run time
// only on a CPU that has them (kernels/cpu/dispatch.cpp); see avx512.cpp for the layout. FMA is
// allowed here but never used: the build turns contraction off (-ffp-contract=off), so every path
// rounds the step math identically.
#if defined(__x86_64__) && !defined(BLDM_FAST_CPU_SINGLE_PATH)
#pragma GCC target("arch=x86-64-v3")
#define BLDM_CPU_ISA cpu_avx2
#define BLDM_CPU_AVX2 1
#include "define_table.h"
#endif
