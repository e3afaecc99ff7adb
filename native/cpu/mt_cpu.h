/* Private header of the CPU implementation: floatX = float, argument checks, and the OpenMP work threshold. */
#ifndef MT_CPU_H
#define MT_CPU_H
typedef float floatX;
#define MT_FLOATX_DEFINED
#include "midtrain_kernels.h"

/* Below this many elements of work a kernel runs single-threaded: entering an OpenMP parallel region costs
 * ~300 ns, more than the work itself. */
#define MT_OMP_MIN_WORK 32768

/* Returns MT_ERR_ARG from the calling kernel when cond is false. */
#define MT_REQUIRE(cond) do { if (!(cond)) return MT_ERR_ARG; } while (0)
/* The CPU implementation is synchronous and requires a NULL stream (see the header). */
#define MT_REQUIRE_STREAM(stream) MT_REQUIRE((stream) == NULL)
#endif

#ifndef MT_CPU_EXPF
#define MT_CPU_EXPF
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

/* dst[i*ld + j] = src[j*stride + i] for i, j < 8: an 8x8 transpose in registers (AVX; exact copies). */
static inline void transpose8x8(float* restrict dst, int ld, const float* restrict src, size_t stride) {
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + stride), r2 = _mm256_loadu_ps(src + 2 * stride),
                 r3 = _mm256_loadu_ps(src + 3 * stride), r4 = _mm256_loadu_ps(src + 4 * stride),
                 r5 = _mm256_loadu_ps(src + 5 * stride), r6 = _mm256_loadu_ps(src + 6 * stride),
                 r7 = _mm256_loadu_ps(src + 7 * stride);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(dst + ld, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(dst + 2 * ld, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(dst + 3 * ld, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(dst + 4 * ld, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(dst + 5 * ld, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(dst + 6 * ld, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(dst + 7 * ld, _mm256_permute2f128_ps(s3, s7, 0x31));
}

/* exp(x) in fp32 without a libm call, so loops that use it vectorise (glibc's vector expf needs -ffast-math, which
 * would break the -inf/NaN handling the kernels rely on). Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split
 * in two for an exact reduction), a degree-7 polynomial for exp(r), and 2^n built in the exponent bits. Relative
 * error <= 2 ulp (measured) for normal results; x < -87.33 gives 0 (exp(-inf) = 0 exactly, subnormal results are
 * flushed), x > 88.37 gives +inf (true values there are within 30% of FLT_MAX), NaN gives NaN. The same operations in the same order on every call: deterministic. */
static inline float mt_expf(float x) {
    float xc = x < -87.33f ? -87.33f : (x > 88.37f ? 88.37f : x);     /* keeps n in [-126, 127] */
    float n = __builtin_rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < -87.33f ? 0.0f : y;
    y = x > 88.37f ? INFINITY : y;
    return x != x ? x : y;
}
#endif
