#ifndef MPQ_CDNNL_SHIM_H
#define MPQ_CDNNL_SHIM_H
#include <oneapi/dnnl/dnnl.h>

/* OpenMP runtime (libgomp) that oneDNN's threads come from. */
int omp_get_max_threads(void);
void omp_set_num_threads(int n);
#endif
