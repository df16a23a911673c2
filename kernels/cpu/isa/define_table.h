// The body of each isa/*.cpp: the loops and their table, bldm_fast::cpu::<BLDM_CPU_ISA>::kTable.
// Include it exactly once, after defining BLDM_CPU_ISA (and BLDM_CPU_AVX512 / BLDM_CPU_AVX2).
#pragma once

#include "bits_loops.h"
#include "float_loops.h"
#include "kernel_table.h"
#include "op_loops.h"
#include "philox_loops.h"

namespace bldm_fast::cpu::BLDM_CPU_ISA {

// constinit: a table of addresses, constant-initialised (no code runs at load).
constinit const KernelTable kTable{
    uniform_range,  words_range,      pack_rows,  unpack_rows,  unpack_rows_float, load_floats,
    store_floats,   ones_to_floats,   floats_to_ones, guided_logits, posterior_bits, final_probs_bits,
    final_bits,     select_known,     noise_bits, bce_sum,      binarize_bits,     quantize};

}  // namespace bldm_fast::cpu::BLDM_CPU_ISA
