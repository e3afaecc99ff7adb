/* Private header of the CPU implementation: floatX = float, and the OpenMP work threshold. */
#ifndef MT_CPU_H
#define MT_CPU_H
typedef float floatX;
#define MT_FLOATX_DEFINED
#include "midtrain_kernels.h"

/* Below this many elements of work a kernel runs single-threaded: entering an OpenMP parallel region costs
 * ~300 ns, more than the work itself (measured in the tech recon). */
#define MT_OMP_MIN_WORK 32768
#endif
