// C entry points over flat arrays for the common vector kernels (layernorm, element-wise add and table),
// so that the C-simulation tests call the HLS C++ from Python (sim/common/csim_vector.py) and compare it
// with the NumPy models bit for bit. Compiled into each accelerator's C-simulation library (its
// registry entry's csim_sources), on that accelerator's GEMM array.
#include <stdint.h>

#include "eltwise/eltwise.h"
#include "layernorm/layernorm.h"
#include "vitaccel_config.h"

extern "C" {

int vitaccel_layernorm(const int16_t* x, const int32_t* g, const int32_t* b, int shift, int64_t eps, int8_t* y,
                       int rows, int D) {
    return vitaccel::layernorm::LayerNorm<vitaccel::cfg::GemmArray>::layer(x, g, b, shift, eps, y, rows, D);
}

int vitaccel_add(const void* a, int a_bits, int32_t ma, const void* b, int b_bits, int32_t mb, int shift, void* y,
                 int out_bits, int64_t n) {
    return vitaccel::eltwise::Eltwise<vitaccel::cfg::GemmArray>::add(a, a_bits, ma, b, b_bits, mb, shift, y, out_bits,
                                                                     n);
}

int vitaccel_lut(const int8_t* x, const int8_t* table, int8_t* y, int64_t n) {
    return vitaccel::eltwise::Eltwise<vitaccel::cfg::GemmArray>::lut(x, table, y, n);
}

}  // extern "C"
