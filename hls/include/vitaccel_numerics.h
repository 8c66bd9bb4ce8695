// The kernel contract's integer arithmetic (NUMERICS.md, version 1) for Vitis HLS and g++ C-simulation.
//
// vitaccel/sim/numerics.py is the golden model; tests/test_csim_numerics.py compiles this header with g++
// against the ap_types headers and compares both bit for bit. Any change here must keep that equality:
// change NUMERICS.md, the NumPy model and NUMERICS_VERSION first.
//
// Every width below is the narrowest that holds the value ranges derived in NUMERICS.md, so that the
// synthesised datapath is no wider than needed and C-simulation wraps exactly where the hardware would
// (it never does, for inputs inside the contract).
#ifndef VITACCEL_NUMERICS_H
#define VITACCEL_NUMERICS_H

#include <ap_int.h>

#include "vitaccel_exp_lut.h"

namespace vitaccel {

typedef ap_int<8> data_t;    // activations and weights, symmetric int8
typedef ap_int<32> acc_t;    // accumulators, biases, attention scores
typedef ap_uint<8> prob_t;   // softmax probabilities, scale 2^-8
typedef ap_uint<31> mult_t;  // requantisation multiplier, 0 <= m < 2^31
typedef ap_uint<6> shift_t;  // right shift, 0 <= s <= 63

// acc * m for acc_t x mult_t, exact: |acc| <= 2^31 and m < 2^31 give |acc * m| < 2^62.
typedef ap_int<63> product_t;
// product + rounding term: up to 2^62 - 2^32 + 1 + 2^62 < 2^63, so one more bit than product_t.
typedef ap_int<64> rounded_t;

// Longest softmax row the 32-bit exp sum admits: 65535 * 2^15 < 2^31 (NUMERICS.md step 4).
static const int SOFTMAX_MAX_ROW = 65535;

// y = clip((acc * m + 2^(s-1)) >> s, -128, 127), round half up. Inlined: it sits inside the callers'
// pipelined output loops, and a function boundary there would stop HLS from scheduling it with them.
// One MAC line's adder tree: the sum of N int8 x int8 products, exact (|sum| <= N 2^14 < 2^23 for N <= 256).
// Synthesis sees an unrolled ap_int tree; C-simulation computes the same integer with native ints, which is
// what makes the g++ model of a whole DeiT fast enough to run (the sum is exact either way, so the two
// cannot differ in a bit; VITACCEL_CSIM_AP_ONLY builds the ap_int tree in C-simulation too, and a test
// compares the two builds).
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
typedef int32_t mac_sum_t;  // C-simulation: a native int holds the same exact sums
#else
typedef ap_int<24> mac_sum_t;  // a MAC tree's sum or one product: at most 256 x 2^14 in magnitude
#endif

template <int N>
inline mac_sum_t dot_int8(const data_t* a, const data_t* b) {
#pragma HLS INLINE
    static_assert(N >= 1 && N <= 256, "the tree's 24 bits hold at most 256 int8 x int8 products");
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
    int s = 0;
    for (int j = 0; j < N; ++j) s += a[j].to_int() * b[j].to_int();
    return s;
#else
    mac_sum_t s = 0;
    for (int j = 0; j < N; ++j) {
#pragma HLS UNROLL
        s += a[j] * b[j];
    }
    return s;
#endif
}

// A MAC line's running accumulator, and acc + dot wrapped to its 32 bits as an assignment to acc_t wraps.
// C-simulation keeps it in a native int32 and adds in uint32 (the same wrap) instead of through a 33-bit
// ap_int temporary; synthesis sees acc_t.
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
typedef int32_t accreg_t;
inline accreg_t acc_plus(int32_t acc, mac_sum_t dot) { return (int32_t)((uint32_t)acc + (uint32_t)dot); }
inline accreg_t acc_plus(acc_t acc, mac_sum_t dot) { return acc_plus((int32_t)acc.to_int(), dot); }
#else
typedef acc_t accreg_t;
inline acc_t acc_plus(acc_t acc, mac_sum_t dot) {
#pragma HLS INLINE
    return acc_t(acc + dot);
}
#endif

// One product of two small operands (int8 x int8, or a probability x int8), exact in 24 bits.
template <class A, class B>
inline mac_sum_t mul_small(A a, B b) {
#pragma HLS INLINE
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
    return a.to_int() * b.to_int();
#else
    return mac_sum_t(a * b);
#endif
}

inline data_t requantize(acc_t acc, mult_t m, shift_t s) {
#pragma HLS INLINE
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
    // C-simulation: the same integers in int64 (|acc m| < 2^62 and half <= 2^62, so the sum fits; g++'s >>
    // on a negative int64 is arithmetic). VITACCEL_CSIM_AP_ONLY builds the ap_int path below instead, which
    // tests/test_csim_kernels.py compares with this one.
    {
        const int sh = s.to_int();
        const int64_t half = (int64_t)((uint64_t(1) << sh) >> 1);
        const int64_t yy = ((int64_t)acc.to_int() * (int64_t)m.to_uint64() + half) >> sh;
        return data_t(yy > 127 ? 127 : (yy < -128 ? -128 : (int)yy));
    }
#endif
    // (1 << s) >> 1 is 2^(s-1) for s > 0 and 0 for s == 0, without a branch. Unsigned, because the signed
    // 1 << 63 would be -2^63 and the shift back would then sign-extend.
    const ap_uint<64> half = (ap_uint<64>(1) << s) >> 1;
    const product_t prod = acc * m;
    // ap_int's >> on a signed value is arithmetic, i.e. floor division by 2^s, which the contract requires.
    const rounded_t y = (rounded_t(prod) + rounded_t(half)) >> s;
    if (y > 127) return data_t(127);
    if (y < -128) return data_t(-128);
    return data_t(y);
}

// exp2 part of the softmax for one kept entry (NUMERICS.md step 3): 2^15 * 2^(-u/256), u >= 0 being the
// entry's distance below the row maximum in log2 units with 8 fractional bits.
inline ap_uint<16> softmax_exp(acc_t score, acc_t mx, mult_t m_exp, shift_t s_exp) {
#pragma HLS INLINE
#if !defined(__SYNTHESIS__) && !defined(VITACCEL_CSIM_AP_ONLY)
    {   // C-simulation: the same steps in int64 (|x m_exp| < 2^62; g++'s >> of a negative int64 is arithmetic)
        int64_t x = (int64_t)score.to_int() - (int64_t)mx.to_int();
        if (x < -(int64_t(1) << 31)) x = -(int64_t(1) << 31);
        const uint64_t u = (uint64_t)(-((x * (int64_t)m_exp.to_uint64()) >> s_exp.to_int()));
        const uint64_t q = u >> EXP_FRAC_BITS;
        if (q > 15) return 0;
        return ap_uint<16>(EXP2_LUT[u & ((1 << EXP_FRAC_BITS) - 1)] >> q);
    }
#endif
    // score <= mx, so score - mx lies in [-(2^32 - 1), 0]: 33 bits before the clamp. Clamping at -2^31 lets
    // the product below fit in 63 bits. With softmax_params' constants such an entry has e = 0 either way,
    // but with a tiny m_exp / 2^s_exp it need not, so the clamp is part of the contract and not optional.
    const ap_int<33> diff = ap_int<33>(score) - ap_int<33>(mx);
    const ap_int<33> x_min = -(ap_int<33>(1) << 31);
    const acc_t x = (diff < x_min) ? acc_t(x_min) : acc_t(diff);
    // x <= 0 and m_exp >= 0, so t <= 0, and |x * m_exp| < 2^62 makes u fit in 62 unsigned bits.
    const product_t t = product_t(x * m_exp) >> s_exp;
    const ap_uint<62> u = -t;
    const ap_uint<54> q = u >> EXP_FRAC_BITS;
    const ap_uint<8> r = u & ((1 << EXP_FRAC_BITS) - 1);
    // 2^15 >> 16 is already 0, so past q = 15 the LUT lookup is skipped rather than shifted by up to 2^54.
    if (q > 15) return 0;
    const ap_uint<4> q4 = q;
    return ap_uint<16>(EXP2_LUT[r]) >> q4;
}

// Integer softmax of one row of n <= NMAX scores (NUMERICS.md). Entries with keep[j] false do not exist
// for the row and get 0; a row with nothing kept is all 0. out[j] for j >= n is left untouched.
//
// Loops run to the compile-time bound NMAX and leave at n, so the hardware is sized for the longest row
// while a short row costs only its own length. Three passes because the maximum and then the sum must be
// known before the next step can start.
template <int NMAX>
void softmax_row(const acc_t scores[NMAX], const bool keep[NMAX], int n, mult_t m_exp, shift_t s_exp,
                 prob_t out[NMAX]) {
    static_assert(NMAX >= 1 && NMAX <= SOFTMAX_MAX_ROW, "softmax rows longer than 65535 overflow the exp sum");

    acc_t mx = 0;
    bool any = false;
SOFTMAX_MAX:
    for (int j = 0; j < NMAX; ++j) {
#pragma HLS PIPELINE II = 1
        if (j >= n) break;
        if (keep[j] && (!any || scores[j] > mx)) {
            mx = scores[j];
            any = true;
        }
    }

    // Kept so that the normalisation pass reads e[] instead of recomputing multiply, shift and lookup.
    ap_uint<16> e[NMAX];
    // Each e <= 2^15 and n <= 65535: the sum stays below 2^31.
    ap_uint<32> sum = 0;
SOFTMAX_EXP:
    for (int j = 0; j < NMAX; ++j) {
#pragma HLS PIPELINE II = 1
        if (j >= n) break;
        const ap_uint<16> ej = keep[j] ? softmax_exp(scores[j], mx, m_exp, s_exp) : ap_uint<16>(0);
        e[j] = ej;
        sum += ej;
    }

    // One division per row instead of one per entry. The row maximum contributes e = 2^15, so a row with a
    // kept entry has sum >= 2^15 and recip <= 2^25; an all-pruned row has sum == 0, and recip = 0 then
    // turns every output into (0 + 2^31) >> 32 = 0 without dividing by zero.
    const ap_uint<41> one = ap_uint<41>(1) << RECIP_BITS;
    const ap_uint<26> recip = any ? ap_uint<26>(one / sum) : ap_uint<26>(0);
SOFTMAX_NORM:
    for (int j = 0; j < NMAX; ++j) {
#pragma HLS PIPELINE II = 1
        if (j >= n) break;
        // e * recip <= 2^15 * 2^25 = 2^40; adding 2^31 (round half up) still fits in 41 bits.
        const ap_uint<41> scaled = ap_uint<41>(e[j] * recip) + (ap_uint<41>(1) << 31);
        const ap_uint<9> p = scaled >> 32;
        // A one-hot row gives 2^40 / 2^15 * 2^15 = 2^40 -> 256, which does not fit in prob_t.
        out[j] = (p > 255) ? prob_t(255) : prob_t(p);
    }
}

}  // namespace vitaccel

#endif  // VITACCEL_NUMERICS_H
