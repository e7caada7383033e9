// The few things Swift cannot import from C on its own:
// MPI's predefined handles (macros over global symbols), C11 atomics on
// shared-memory words, and CPU feature tests.
#ifndef COMET_SHIM_H
#define COMET_SHIM_H

#include <mpi.h>
#include <stdint.h>
#include <stdbool.h>
#include <time.h>
#include <stdio.h>

// MARK: MPI predefined handles

MPI_Comm comet_comm_world(void);
MPI_Comm comet_comm_null(void);
MPI_Info comet_info_null(void);
MPI_Win comet_win_null(void);
MPI_Errhandler comet_errors_return(void);
MPI_Status *comet_status_ignore(void);
void *comet_in_place(void);

MPI_Datatype comet_type_float(void);
MPI_Datatype comet_type_double(void);
MPI_Datatype comet_type_int32(void);
MPI_Datatype comet_type_int64(void);
MPI_Datatype comet_type_uint64(void);
MPI_Datatype comet_type_byte(void);

MPI_Op comet_op_sum(void);
MPI_Op comet_op_max(void);
MPI_Op comet_op_min(void);
MPI_Op comet_op_replace(void);
MPI_Op comet_op_no_op(void);

// MARK: Atomics on 64-bit words that other processes may map (shared windows)

static inline uint64_t comet_load_acquire(const uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}
static inline void comet_store_release(uint64_t *word, uint64_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
}
static inline uint64_t comet_fetch_add_acq_rel(uint64_t *word, uint64_t delta) {
    return __atomic_fetch_add(word, delta, __ATOMIC_ACQ_REL);
}
static inline void comet_fence_seq_cst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// MARK: Doorbells: 32-bit words that waiters sleep on (Linux futexes)

static inline uint32_t comet_load_acquire_u32(const uint32_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}
static inline void comet_store_release_u32(uint32_t *word, uint32_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
}
static inline uint32_t comet_fetch_add_u32(uint32_t *word, uint32_t delta) {
    return __atomic_fetch_add(word, delta, __ATOMIC_ACQ_REL);
}
/// Sleeps while `*word == expected`, for at most `timeout_ns`; returns early on a
/// wake-up, a change or a signal. Works across processes on shared memory.
void comet_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);
/// Wakes every thread sleeping on `word`, in any process.
void comet_futex_wake_all(uint32_t *word);

// MARK: The job

/// This process's rank in MPI_COMM_WORLD, or the launcher's idea of it before
/// MPI_Init (0 outside a launcher).
int comet_world_rank(void);
/// Aborts every rank of the job (MPI_Abort while MPI is active), then exits with
/// `code`. Not safe to call from several threads at once (Open MPI's abort is not).
void comet_abort_job(int code) __attribute__((noreturn));

// MARK: Output

/// Writes `text` to standard error and flushes it (Swift 6 cannot touch `stderr`).
static inline void comet_write_stderr(const char *text) {
    fputs(text, stderr);
    fflush(stderr);
}

/// Flushes every C output stream.
static inline void comet_flush_all(void) { fflush(NULL); }

// MARK: Time

/// Seconds on the monotonic clock.
static inline double comet_monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

// MARK: Device engines

/// The engine of the emulated device that the calling thread plays (-1: none).
int comet_engine(void);
void comet_set_engine(int engine);
/// CPU seconds the calling thread spent waiting (futex sleeps, yields) since the
/// last call, which device time does not charge; reading resets it.
double comet_take_waiting_cpu(void);
void comet_add_waiting_cpu(double seconds);
/// Work whose `cpu` seconds device time charges as `modelled` seconds instead
/// (a GEMM charged from sampled costs).
void comet_charge_modelled(double cpu, double modelled);
/// Modelled seconds of the calling thread's work since the last call; reading resets it.
double comet_take_modelled_seconds(void);

// MARK: CPU features (for choosing an OpenBLAS kernel)

/// AVX-512 F, BW, DQ, VL and CD: what OpenBLAS's SkylakeX kernels use.
bool comet_cpu_has_avx512(void);
/// AVX2 and FMA: what OpenBLAS's Haswell kernels use.
bool comet_cpu_has_avx2(void);

// MARK: CPU affinity

/// CPUs the calling thread may run on.
int comet_allowed_cpu_count(void);
/// Pins the calling thread (and the threads it creates from now on) to the
/// `index`-th CPU it may run on; returns that CPU's number, or -1 on failure.
int comet_pin_to_allowed_cpu(int index);

#endif
