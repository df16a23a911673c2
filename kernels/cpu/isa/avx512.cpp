// The CPU loops compiled for AVX-512 (x86-64-v4: F, BW, CD, DQ, VL), chosen at run time only on a
// CPU that has them (kernels/cpu/dispatch.cpp). The pragma comes before every include, so each
// function of this file, the shared headers' inline math included, is compiled for AVX-512; the
// loops live in bldm_fast::cpu::cpu_avx512 with internal linkage and the only exported symbol is
// the table (tests/test_cpu_dispatch.py checks both with nm).
#if defined(__x86_64__) && !defined(BLDM_FAST_CPU_SINGLE_PATH)
#pragma GCC target("arch=x86-64-v4")
// gcc 12's own avx512fintrin.h starts some intrinsics from _mm512_undefined_epi32() on purpose,
// which -Wall reports as maybe-uninitialized in every caller.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define BLDM_CPU_ISA cpu_avx512
#define BLDM_CPU_AVX512 1
#include "define_table.h"
#endif
