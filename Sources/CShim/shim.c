#include "skesl_shim.h"

MPI_Comm skesl_mpi_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Comm skesl_mpi_comm_null(void) { return MPI_COMM_NULL; }
MPI_Datatype skesl_mpi_float(void) { return MPI_FLOAT; }
MPI_Datatype skesl_mpi_double(void) { return MPI_DOUBLE; }
MPI_Datatype skesl_mpi_int(void) { return MPI_INT; }
MPI_Datatype skesl_mpi_int64(void) { return MPI_INT64_T; }
MPI_Datatype skesl_mpi_uint64(void) { return MPI_UINT64_T; }
MPI_Datatype skesl_mpi_byte(void) { return MPI_BYTE; }
MPI_Datatype skesl_mpi_char(void) { return MPI_CHAR; }
MPI_Op skesl_mpi_sum(void) { return MPI_SUM; }
MPI_Op skesl_mpi_max(void) { return MPI_MAX; }
MPI_Op skesl_mpi_min(void) { return MPI_MIN; }
void *skesl_mpi_in_place(void) { return MPI_IN_PLACE; }
MPI_Request skesl_mpi_request_null(void) { return MPI_REQUEST_NULL; }
MPI_Status *skesl_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
MPI_Errhandler skesl_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
int skesl_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
int skesl_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
int skesl_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
int skesl_mpi_success(void) { return MPI_SUCCESS; }
int skesl_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
int skesl_mpi_any_source(void) { return MPI_ANY_SOURCE; }
int skesl_mpi_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
int skesl_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
MPI_Info skesl_mpi_info_null(void) { return MPI_INFO_NULL; }

#include <stdatomic.h>
int64_t skesl_atomic_load_acquire(const int64_t *p) {
    return atomic_load_explicit((const _Atomic int64_t *)p, memory_order_acquire);
}
void skesl_atomic_store_release(int64_t *p, int64_t v) {
    atomic_store_explicit((_Atomic int64_t *)p, v, memory_order_release);
}

hid_t skesl_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
hid_t skesl_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
hid_t skesl_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
hid_t skesl_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
hid_t skesl_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
hid_t skesl_h5t_native_uint32(void) { return H5T_NATIVE_UINT32; }
hid_t skesl_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
hid_t skesl_h5t_c_s1(void) { return H5T_C_S1; }
unsigned skesl_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
unsigned skesl_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
unsigned skesl_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
unsigned skesl_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
hid_t skesl_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
hid_t skesl_h5p_file_access(void) { return H5P_FILE_ACCESS; }
hid_t skesl_h5p_dataset_access(void) { return H5P_DATASET_ACCESS; }
hid_t skesl_h5p_dataset_xfer(void) { return H5P_DATASET_XFER; }
hid_t skesl_h5p_link_create(void) { return H5P_LINK_CREATE; }
hid_t skesl_h5p_default(void) { return H5P_DEFAULT; }
hid_t skesl_h5s_all(void) { return H5S_ALL; }
hsize_t skesl_h5s_unlimited(void) { return H5S_UNLIMITED; }
size_t skesl_h5t_variable(void) { return H5T_VARIABLE; }
void skesl_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
int skesl_h5_is_threadsafe(void) { hbool_t t = 0; H5is_library_threadsafe(&t); return t ? 1 : 0; }

// ---- Stop requests from signals
// The handler does only what is async-signal-safe: it reads the monotonic clock and
// writes one fixed-size record to a non-blocking pipe. Everything else (coalescing,
// grace periods, the emergency checkpoint) happens on a thread that reads the pipe
// (Sources/SKESLTraining/Signals.swift).
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile int skesl_stop_fd = -1;

static void skesl_stop_handler(int sig) {
    int saved = errno;
    struct skesl_signal_record r;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r.signal = sig;
    r.reserved = 0;
    r.nanoseconds = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (skesl_stop_fd >= 0) {
        ssize_t n = write(skesl_stop_fd, &r, sizeof r);   // atomic: sizeof r < PIPE_BUF
        (void)n;
    }
    errno = saved;
}

int skesl_stop_signals_install(int fd, const int *signals, int count) {
    skesl_stop_fd = fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = skesl_stop_handler;
    sigemptyset(&sa.sa_mask);
    // SA_RESTART: system calls of other threads (file writes, MPI's sockets) resume
    // instead of failing with EINTR.
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &sa, NULL) != 0) return -1;
    }
    return 0;
}
