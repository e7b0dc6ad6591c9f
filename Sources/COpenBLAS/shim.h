#include <cblas.h>

/* The OPENBLAS_THREAD_TIMEOUT that OpenBLAS read when it loaded (0: unset). Not in OpenBLAS's
   headers; declared weak so that a build without it still links (-1 then). */
int openblas_thread_timeout(void) __attribute__((weak));
static inline int skesl_openblas_thread_timeout(void) {
    return openblas_thread_timeout ? openblas_thread_timeout() : -1;
}
