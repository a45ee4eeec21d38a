#ifndef VAULTLINE_CPU_FEATURES_H
#define VAULTLINE_CPU_FEATURES_H

#if defined(__x86_64__)
#include <cpuid.h>

/* The x86 feature levels the BLAKE3 lane modules are compiled for, checked with CPUID and,
 * for the register state the operating system saves, XGETBV. */

/* haswell (BLAKE3Lanes8): AVX, AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE, POPCNT, YMM state. */
static inline int vl_cpu_has_avx2_haswell(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned need1 = (1u << 12) | (1u << 22) | (1u << 23) | (1u << 27) | (1u << 28) | (1u << 29);
    /* FMA, MOVBE, POPCNT, OSXSAVE, AVX, F16C */
    if ((c & need1) != need1) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0x6u) != 0x6u) return 0; /* SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned need7 = (1u << 3) | (1u << 5) | (1u << 8); /* BMI1, AVX2, BMI2 */
    if ((b & need7) != need7) return 0;
    if (!__get_cpuid(0x80000001u, &a, &b, &c, &d)) return 0;
    return (c & (1u << 5)) ? 1 : 0; /* LZCNT */
}

/* skylake-avx512 (BLAKE3Lanes16): all of the above plus AVX-512 F/DQ/CD/BW/VL with the opmask
 * and ZMM state enabled. */
static inline int vl_cpu_has_avx512_skylake(void) {
    if (!vl_cpu_has_avx2_haswell()) return 0;
    unsigned a, b, c, d;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0xe6u) != 0xe6u) return 0; /* SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31); /* F, DQ, CD, BW, VL */
    return (b & need) == need ? 1 : 0;
}
#else
static inline int vl_cpu_has_avx2_haswell(void) { return 0; }
static inline int vl_cpu_has_avx512_skylake(void) { return 0; }
#endif

#endif
