#define _GNU_SOURCE
#include "comet_shim.h"

#include <limits.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

MPI_Comm comet_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Comm comet_comm_null(void) { return MPI_COMM_NULL; }
MPI_Info comet_info_null(void) { return MPI_INFO_NULL; }
MPI_Win comet_win_null(void) { return MPI_WIN_NULL; }
MPI_Errhandler comet_errors_return(void) { return MPI_ERRORS_RETURN; }
MPI_Status *comet_status_ignore(void) { return MPI_STATUS_IGNORE; }
void *comet_in_place(void) { return MPI_IN_PLACE; }

MPI_Datatype comet_type_float(void) { return MPI_FLOAT; }
MPI_Datatype comet_type_double(void) { return MPI_DOUBLE; }
MPI_Datatype comet_type_int32(void) { return MPI_INT32_T; }
MPI_Datatype comet_type_int64(void) { return MPI_INT64_T; }
MPI_Datatype comet_type_uint64(void) { return MPI_UINT64_T; }
MPI_Datatype comet_type_byte(void) { return MPI_BYTE; }

MPI_Op comet_op_sum(void) { return MPI_SUM; }
MPI_Op comet_op_max(void) { return MPI_MAX; }
MPI_Op comet_op_min(void) { return MPI_MIN; }
MPI_Op comet_op_replace(void) { return MPI_REPLACE; }
MPI_Op comet_op_no_op(void) { return MPI_NO_OP; }

bool comet_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512cd");
}

bool comet_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void comet_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
}

void comet_futex_wake_all(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int comet_world_rank(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        return rank;
    }
    // Before MPI_Init: the rank that the launcher put in the environment.
    const char *names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *value = getenv(names[i]);
        if (value != NULL) return atoi(value);
    }
    return 0;
}

void comet_abort_job(int code) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static __thread int engine_of_thread = -1;
static __thread double waiting_cpu = 0;  // CPU seconds device time does not charge

int comet_engine(void) { return engine_of_thread; }
void comet_set_engine(int engine) { engine_of_thread = engine; }

double comet_take_waiting_cpu(void) {
    double taken = waiting_cpu;
    waiting_cpu = 0;
    return taken;
}

void comet_add_waiting_cpu(double seconds) { waiting_cpu += seconds; }

static __thread double modelled_seconds = 0;

void comet_charge_modelled(double cpu, double modelled) {
    waiting_cpu += cpu;
    modelled_seconds += modelled;
}

double comet_take_modelled_seconds(void) {
    double taken = modelled_seconds;
    modelled_seconds = 0;
    return taken;
}

int comet_allowed_cpu_count(void) {
    cpu_set_t allowed;
    return sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
}

int comet_pin_to_allowed_cpu(int index) {
    cpu_set_t allowed;
    if (index < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || index-- > 0) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
    }
    return -1;
}
