// C entry points over plain arrays, so that vitaccel/sim/csim.py can drive the HLS numerics through ctypes
// and compare them with the NumPy model. Not synthesised: this is test glue, so it may allocate.
//
// Build (the harness does this): g++ -O2 -std=c++14 -shared -fPIC -DVITACCEL_TARGET_<IDENT>
//   -I hls/include -I hls/include/csim -isystem <hls4ml>/templates/vivado/ap_types numerics_capi.cpp
//
// Return codes: 0 ok, and a negative value naming the first bad argument, checked before anything is
// written, because ap_uint would otherwise silently wrap an out-of-range multiplier or shift.
#include <stdint.h>

#include <vector>

#include "vitaccel_config.h"
#include "vitaccel_numerics.h"

namespace {

// Longest row the softmax entry point accepts: the largest max_tokens any config may declare.
const int SOFTMAX_NMAX = 4096;

const int ERR_BAD_LENGTH = -1;
const int ERR_BAD_MULT = -2;
const int ERR_BAD_SHIFT = -3;

}  // namespace

extern "C" {

unsigned vitaccel_config_hash32(void) { return vitaccel::cfg::CONFIG_HASH32; }

int vitaccel_numerics_version(void) { return vitaccel::NUMERICS_VERSION; }

int vitaccel_softmax_nmax(void) { return SOFTMAX_NMAX; }

// Element-wise: out[i] = requantize(acc[i], mult[i], shift[i]). Callers broadcast per-channel (m, s).
int vitaccel_requantize(const int32_t* acc, const int32_t* mult, const int32_t* shift, int8_t* out, int n) {
    if (n < 0) return ERR_BAD_LENGTH;
    for (int i = 0; i < n; ++i) {
        if (mult[i] < 0) return ERR_BAD_MULT;
        if (shift[i] < 0 || shift[i] > 63) return ERR_BAD_SHIFT;
    }
    for (int i = 0; i < n; ++i) {
        const vitaccel::data_t y =
            vitaccel::requantize(vitaccel::acc_t(acc[i]), vitaccel::mult_t(mult[i]), vitaccel::shift_t(shift[i]));
        out[i] = static_cast<int8_t>(y.to_int());
    }
    return 0;
}

// rows x n scores, row-major; keep[i] != 0 marks an existing entry. One (m_exp, s_exp) for all rows.
int vitaccel_softmax(const int32_t* scores, const uint8_t* keep, int rows, int n, int32_t m_exp, int32_t s_exp,
                     uint8_t* out) {
    if (rows < 0 || n < 1 || n > SOFTMAX_NMAX) return ERR_BAD_LENGTH;
    if (m_exp < 0) return ERR_BAD_MULT;
    if (s_exp < 0 || s_exp > 63) return ERR_BAD_SHIFT;
    // Heap, not stack: ap_int objects are wider than their bit count in C-simulation.
    std::vector<vitaccel::acc_t> row(SOFTMAX_NMAX);
    std::vector<vitaccel::prob_t> prob(SOFTMAX_NMAX);
    bool mask[SOFTMAX_NMAX];
    for (int r = 0; r < rows; ++r) {
        const long base = static_cast<long>(r) * n;
        for (int j = 0; j < n; ++j) {
            row[j] = scores[base + j];
            mask[j] = keep[base + j] != 0;
        }
        vitaccel::softmax_row<SOFTMAX_NMAX>(row.data(), mask, n, vitaccel::mult_t(m_exp), vitaccel::shift_t(s_exp),
                                            prob.data());
        for (int j = 0; j < n; ++j) out[base + j] = static_cast<uint8_t>(prob[j].to_uint());
    }
    return 0;
}

}  // extern "C"
