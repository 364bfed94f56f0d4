// multiproc.h: data parallelism's host side, shared by both trainers: start and end MPI, this
// process's rank among `size` ranks (and its rank on its node, which picks the GPU), checked
// wrappers around the few collectives the trainers use, and the rule that an error on any one
// rank ends every rank (fail() -> MPI_Abort), so no rank is left waiting in a collective.
//
// Built with USE_MPI (make USE_MPI=1) this is MPI; without it, every function is the
// one-process identity (rank 0 of 1) and a launch by mpirun/srun with more than one process is
// refused with an error naming USE_MPI=1, instead of N copies training the same thing.
//
// The ZeRO-1 split: P values (parameters, gradients, AdamW moments) are cut into `size`
// contiguous slices (mp_slice). Rank r reduces (sums) the gradients of
// its slice only, updates only its slice of the weights and moments, then every rank gathers
// every slice of the weights. mp_slice() is the one place this split is defined.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <cstring>
#include <vector>
#include "common.h"
#ifdef USE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: Open MPI's C++ bindings warn under -Wextra
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

struct MultiProc {
    int rank = 0;        // this process, 0..size-1; rank 0 alone writes logs and checkpoints
    int size = 1;        // processes in the job
    int local_rank = 0;  // this process among those on its node (which GPU it drives)
};
inline MultiProc g_mp;

inline int mp_rank() { return g_mp.rank; }
inline int mp_size() { return g_mp.size; }
inline bool mp_is_root() { return g_mp.rank == 0; }

// Values per rank in the ZeRO-1 split of n values: n / size rounded up to a multiple of 32, so
// that every slice starts 128-byte aligned (vector loads on the GPU).
inline size_t mp_shard_size(size_t n, int size) {
    size_t per_rank = (n + size - 1) / size;
    return (per_rank + 31) / 32 * 32;
}

// The ZeRO-1 slice [*lo, *hi) of n values that `rank` owns: [rank * shard, (rank + 1) * shard)
// cut at n (the last slices may be short or empty).
inline void mp_slice(size_t n, int rank, int size, size_t* lo, size_t* hi) {
    size_t shard = mp_shard_size(n, size);
    *lo = std::min(n, (size_t)rank * shard);
    *hi = std::min(n, *lo + shard);
}

// The number of processes a launcher started, from the variables mpirun (Open MPI, MPICH) and
// Slurm's srun set; 1 when none is set. Slurm's count is trusted only inside a job step that srun
// started (a numeric SLURM_STEP_ID), not in a batch script, which may run one process of many
// tasks' allocation.
inline long launcher_process_count() {
    const char* names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"};
    long n, step;
    for (const char* name : names)
        if (parse_int(getenv(name), &n) && n > 1) return n;
    if (parse_int(getenv("SLURM_STEP_ID"), &step) && step >= 0 && step < 0xFFFFFFF0L &&
        parse_int(getenv("SLURM_STEP_NUM_TASKS"), &n) && n > 1)
        return n;
    return 1;
}

#ifdef USE_MPI
// Every MPI call goes through here: MPI's default handler on MPI_COMM_WORLD aborts the job,
// but a code path that set MPI_ERRORS_RETURN still gets one clear line.
#define mpiCheck(call)                                                                    \
    do {                                                                                  \
        int mpi_rc_ = (call);                                                             \
        if (mpi_rc_ != MPI_SUCCESS) {                                                     \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                          \
            int mpi_len_ = 0;                                                             \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                               \
            fail("MPI call failed at %s:%d: %s (%s)", __FILE__, __LINE__, #call, mpi_msg_); \
        }                                                                                 \
    } while (0)

// fail()'s hook under MPI. Rank 0 prints and aborts at once. Another rank first waits a moment:
// when every rank meets the same bad input (a wrong flag, a missing file), rank 0's abort ends
// it before it prints, so the user sees one error line, not one per rank; an error of its own
// still ends the job a second later, with the rank named.
inline void mp_fail_hook(const char* message, int code) {
    if (g_mp.rank != 0) {
        sleep(1);
        fprintf(stderr, "error: rank %d of %d: %s\n", g_mp.rank, g_mp.size, message);
    } else {
        fprintf(stderr, "error: %s\n", message);
    }
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);  // not reached: MPI_Abort does not return
}

inline void mp_finalize_at_exit() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}
#endif

// Starts MPI (when built with it) and sets g_mp. Ranks other than 0 print nothing on stdout:
// the console shows one run, rank 0's; their errors still reach stderr.
// A second call does nothing (test_gpt2cu reaches it through cuda_setup()).
inline void mp_init(int* argc, char*** argv) {
    static bool started = false;
    if (started) return;
    started = true;
#ifdef USE_MPI
    mpiCheck(MPI_Init(argc, argv));
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &g_mp.rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &g_mp.size));
    MPI_Comm node;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_mp.rank, MPI_INFO_NULL, &node));
    mpiCheck(MPI_Comm_rank(node, &g_mp.local_rank));
    mpiCheck(MPI_Comm_free(&node));
    fail_hook = mp_fail_hook;
    atexit(mp_finalize_at_exit);  // main()'s every return, the --on-nan stop exit included
    if (g_mp.rank != 0 && freopen("/dev/null", "w", stdout) == NULL) fail("cannot silence stdout on rank %d", g_mp.rank);
#else
    (void)argc;
    (void)argv;
    long n = launcher_process_count();
    if (n > 1)
        fail("launched as %ld processes (mpirun/srun), but this binary was built without MPI: "
             "rebuild with USE_MPI=1 (make clean && make USE_MPI=1), or run one process", n);
#endif
}

// Sums n values over all ranks, in place; every rank gets the sum.
inline void mp_sum(double* x, int n) {
#ifdef USE_MPI
    if (g_mp.size > 1) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#endif
}
inline void mp_sum(long* x, int n) {
#ifdef USE_MPI
    if (g_mp.size > 1) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD));
#endif
}

// The largest of n values over all ranks, in place.
inline void mp_max(double* x, int n) {
#ifdef USE_MPI
    if (g_mp.size > 1) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
#endif
}

// Fails on every rank if the ranks disagree on a value they must share (the data files' token
// count, the number of steps): a node with other files would otherwise train silently wrong.
inline void mp_check_same(long value, const char* what) {
#ifdef USE_MPI
    if (g_mp.size == 1) return;
    long lo = value, hi = value;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD));
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD));
    if (lo != hi && g_mp.rank == 0)
        fail("the ranks disagree on %s (%ld to %ld): every rank must see the same files and flags", what, lo, hi);
    if (lo != hi) sleep(5);  // rank 0's abort ends this rank
#else
    (void)value;
    (void)what;
#endif
}

#ifdef USE_MPI
// counts[r], displs[r]: rank r's ZeRO-1 slice of n values, as MPI's *v collectives want them.
inline void mp_slice_counts(size_t n, int* counts, int* displs) {
    if (n > (size_t)INT_MAX) fail("%zu parameters is more than MPI's int counts allow", n);
    for (int r = 0; r < g_mp.size; r++) {
        size_t lo, hi;
        mp_slice(n, r, g_mp.size, &lo, &hi);
        counts[r] = (int)(hi - lo);
        displs[r] = (int)lo;
    }
}
#endif

// x (n) on every rank -> this rank's slice of x holds the sum over ranks of that slice (the
// rest of x is left as it was: stale). The gradient reduction of ZeRO-1.
inline void mp_reduce_scatter_sum(float* x, size_t n) {
#ifdef USE_MPI
    if (g_mp.size == 1) return;
    std::vector<int> counts(g_mp.size), displs(g_mp.size);
    mp_slice_counts(n, counts.data(), displs.data());
    // in place, MPI leaves this rank's block at the start of x; move it to where it belongs
    mpiCheck(MPI_Reduce_scatter(MPI_IN_PLACE, x, counts.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    memmove(x + displs[g_mp.rank], x, (size_t)counts[g_mp.rank] * sizeof(float));
#else
    (void)x;
    (void)n;
#endif
}

// Each rank's slice of x (n) -> all of x on every rank (the updated weights of ZeRO-1).
inline void mp_all_gather(float* x, size_t n) {
#ifdef USE_MPI
    if (g_mp.size == 1) return;
    std::vector<int> counts(g_mp.size), displs(g_mp.size);
    mp_slice_counts(n, counts.data(), displs.data());
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD));
#else
    (void)x;
    (void)n;
#endif
}

// Each rank's slice of x (n) -> all of x on rank 0 (the AdamW moments, for the checkpoint).
inline void mp_gather_to_root(float* x, size_t n) {
#ifdef USE_MPI
    if (g_mp.size == 1) return;
    std::vector<int> counts(g_mp.size), displs(g_mp.size);
    mp_slice_counts(n, counts.data(), displs.data());
    if (g_mp.rank == 0)
        mpiCheck(MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD));
    else
        mpiCheck(MPI_Gatherv(x + displs[g_mp.rank], counts[g_mp.rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, MPI_COMM_WORLD));
#else
    (void)x;
    (void)n;
#endif
}
