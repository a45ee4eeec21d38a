#ifndef VAULTLINE_CPU_FEATURES_H
#define VAULTLINE_CPU_FEATURES_H

#if defined(__x86_64__)
#include <cpuid.h>

/* 1 when the CPU and the operating system support every instruction the BLAKE3Lanes module
 * may use (it is compiled for skylake-avx512): AVX-512 F/VL/BW/DQ/CD with the ZMM and opmask
 * state enabled in XCR0, plus AVX2, BMI1/2, LZCNT, MOVBE and POPCNT. */
static inline int vl_cpu_has_avx512_skylake(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned osxsave = 1u << 27, movbe = 1u << 22, popcnt = 1u << 23;
    if ((c & osxsave) == 0 || (c & movbe) == 0 || (c & popcnt) == 0) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0xe6u) != 0xe6u) return 0; /* SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned need = (1u << 3) | (1u << 5) | (1u << 8) /* BMI1, AVX2, BMI2 */
        | (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31); /* F, DQ, CD, BW, VL */
    if ((b & need) != need) return 0;
    if (!__get_cpuid(0x80000001u, &a, &b, &c, &d)) return 0;
    return (c & (1u << 5)) ? 1 : 0; /* LZCNT */
}
#else
static inline int vl_cpu_has_avx512_skylake(void) { return 0; }
#endif

#endif
