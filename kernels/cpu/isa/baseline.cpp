// The CPU loops compiled with the build's own flags: the portable x86-64 (SSE2) path of the default
// dispatching build, or the one path of a BLDM_FAST_CPU_ARCH build (-march=...). Every CPU the
// extension runs on can run it.
#define BLDM_CPU_ISA cpu_baseline
#include "define_table.h"
