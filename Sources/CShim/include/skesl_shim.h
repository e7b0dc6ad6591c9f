// Expression macros of Open MPI and HDF5 do not import into Swift; these
// functions hand their values over. Keep this file small and obvious.
#ifndef SKESL_SHIM_H
#define SKESL_SHIM_H
#include <mpi.h>
#include <hdf5.h>

// ---- MPI handles and constants
MPI_Comm skesl_mpi_comm_world(void);
MPI_Comm skesl_mpi_comm_null(void);
MPI_Datatype skesl_mpi_float(void);
MPI_Datatype skesl_mpi_double(void);
MPI_Datatype skesl_mpi_int(void);
MPI_Datatype skesl_mpi_int64(void);
MPI_Datatype skesl_mpi_uint64(void);
MPI_Datatype skesl_mpi_byte(void);
MPI_Datatype skesl_mpi_char(void);
MPI_Op skesl_mpi_sum(void);
MPI_Op skesl_mpi_max(void);
MPI_Op skesl_mpi_min(void);
void *skesl_mpi_in_place(void);
MPI_Request skesl_mpi_request_null(void);
MPI_Status *skesl_mpi_status_ignore(void);
MPI_Errhandler skesl_mpi_errors_return(void);
int skesl_mpi_thread_multiple(void);
int skesl_mpi_thread_serialized(void);
int skesl_mpi_thread_funneled(void);
int skesl_mpi_success(void);
int skesl_mpi_max_error_string(void);
int skesl_mpi_any_source(void);
int skesl_mpi_max_processor_name(void);
int skesl_mpi_comm_type_shared(void);
MPI_Info skesl_mpi_info_null(void);

// ---- Atomics on memory shared between processes (the shared-memory gradient sum,
// Sources/SKESLDistributed/SharedMemoryEngine.swift): C11 acquire/release on a 64-bit counter.
#include <stdint.h>
int64_t skesl_atomic_load_acquire(const int64_t *p);
void skesl_atomic_store_release(int64_t *p, int64_t v);

// ---- HDF5 types, flags and property-list classes
hid_t skesl_h5t_native_float(void);
hid_t skesl_h5t_native_double(void);
hid_t skesl_h5t_native_int32(void);
hid_t skesl_h5t_native_int64(void);
hid_t skesl_h5t_native_uint8(void);
hid_t skesl_h5t_native_uint32(void);
hid_t skesl_h5t_native_uint64(void);
hid_t skesl_h5t_c_s1(void);
unsigned skesl_h5f_acc_trunc(void);
unsigned skesl_h5f_acc_excl(void);
unsigned skesl_h5f_acc_rdonly(void);
unsigned skesl_h5f_acc_rdwr(void);
hid_t skesl_h5p_dataset_create(void);
hid_t skesl_h5p_file_access(void);
hid_t skesl_h5p_dataset_access(void);
hid_t skesl_h5p_dataset_xfer(void);
hid_t skesl_h5p_link_create(void);
hid_t skesl_h5p_default(void);
hid_t skesl_h5s_all(void);
hsize_t skesl_h5s_unlimited(void);
size_t skesl_h5t_variable(void);
// Silence HDF5's own stderr error stack: errors reach the user through our messages.
void skesl_h5_silence_errors(void);
// 1 when the library was built thread-safe.
int skesl_h5_is_threadsafe(void);


// ---- Stop requests from signals (Sources/SKESLTraining/Signals.swift)
#include <stdint.h>
struct skesl_signal_record {
    int32_t signal;
    int32_t reserved;
    int64_t nanoseconds;   // CLOCK_MONOTONIC at delivery
};
// Installs one handler (SA_RESTART) for each of `signals` that writes a
// skesl_signal_record to `fd` (a non-blocking pipe) and nothing else. 0, or -1 with errno.
int skesl_stop_signals_install(int fd, const int *signals, int count);

#endif
