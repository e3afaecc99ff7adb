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
