/* Private header of the CPU implementation: floatX = float, argument checks, and the OpenMP work threshold. */
#ifndef MT_CPU_H
#define MT_CPU_H
typedef float floatX;
#define MT_FLOATX_DEFINED
#include "midtrain_kernels.h"

/* Below this many elements of work a kernel runs single-threaded: entering an OpenMP parallel region costs
 * ~300 ns, more than the work itself (measured in the tech recon). */
#define MT_OMP_MIN_WORK 32768

/* Returns MT_ERR_ARG from the calling kernel when cond is false. */
#define MT_REQUIRE(cond) do { if (!(cond)) return MT_ERR_ARG; } while (0)
/* The CPU implementation is synchronous and requires a NULL stream (see the header). */
#define MT_REQUIRE_STREAM(stream) MT_REQUIRE((stream) == NULL)
#endif
