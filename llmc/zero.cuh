// llmc/zero.cuh: data parallelism on the GPU, one process per GPU (USE_MPI=1 only): NCCL for the
// collectives, stream-ordered on g_stream so that the host never waits for them, and the ZeRO
// stage 1 split of the optimizer (multiproc.h's mp_slice: rank r owns [lo, hi) of the flat
// parameter array, lo = r * shard, at most `shard` values; the buffers NCCL works on whole are
// padded to shard * size, where rank r's block starts at r * shard).
// A step with R ranks, each having accumulated the gradient of its B sequences with the loss
// scaled by 1/R:
//   1. all-reduce (sum) the step's loss sum, non-finite counters and entropy sums, so every rank
//      sees the global batch's numbers and takes the same NaN-guard decision;
//   2. reduce-scatter (sum) the fp32 gradients: rank r's slice now holds the global gradient;
//   3. the norm's per-block partial sums of squares over the own slice, all-reduced: the global
//      norm (each element counted once), then the guard's verdict and clipping as with one GPU;
//   4. AdamW on the own slice of the fp32 master weights and moments (the only copies: memory
//      per GPU for them falls as 1/R), writing the slice of the floatX working weights;
//   5. all-gather the working weights (bf16 in the default build), and the learnable slopes,
//      which the forward reads in fp32 (zero_sync_slopes).
// Checkpoints gather the slices on the host of rank 0 (MPI), which writes the single-process
// files; a resume gives each rank its slice of them.
#pragma once
#ifdef USE_MPI

#include <nccl.h>
#include "../multiproc.h"
#include "cuda_common.cuh"

#define ncclCheck(call)                                                                                       \
    do {                                                                                                      \
        ncclResult_t nccl_rc_ = (call);                                                                       \
        if (nccl_rc_ != ncclSuccess) fail("NCCL error at %s:%d: %s (%s)", __FILE__, __LINE__, #call, ncclGetErrorString(nccl_rc_)); \
    } while (0)

#if defined(ENABLE_FP32)
static const ncclDataType_t NCCL_FLOATX = ncclFloat;
#elif defined(ENABLE_FP16)
static const ncclDataType_t NCCL_FLOATX = ncclHalf;
#else
static const ncclDataType_t NCCL_FLOATX = ncclBfloat16;
#endif

struct ZeroShard {
    int rank, size;
    size_t n;         // parameters (slopes included)
    size_t shard;     // values per rank; padded buffers hold shard * size
    size_t lo, hi;    // this rank's slice [lo, hi) of the n parameters
    ncclComm_t comm;  // all ranks, one GPU each
};

// The NCCL communicator over MPI_COMM_WORLD (rank 0 draws the id, MPI broadcasts it) and this
// rank's slice of n parameters.
inline void zero_init(ZeroShard* z, size_t n) {
    z->rank = mp_rank();
    z->size = mp_size();
    z->n = n;
    z->shard = mp_shard_size(n, z->size);
    mp_slice(n, z->rank, z->size, &z->lo, &z->hi);
    ncclUniqueId id;
    if (z->rank == 0) ncclCheck(ncclGetUniqueId(&id));
    mpiCheck(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
    ncclCheck(ncclCommInitRank(&z->comm, z->size, id, z->rank));
}

inline void zero_free(ZeroShard* z) { ncclCheck(ncclCommDestroy(z->comm)); }

// Step 1: the step's measurements summed over ranks, in place. counters: (num_counters) the
// per-layer non-finite counts; sums: (num_sums) the entropy sums.
inline void zero_sum_measurements(ZeroShard* z, double* loss_sum, unsigned long long* counters, int num_counters,
                                  double* sums, int num_sums) {
    ncclCheck(ncclGroupStart());
    ncclCheck(ncclAllReduce(loss_sum, loss_sum, 1, ncclFloat64, ncclSum, z->comm, g_stream));
    ncclCheck(ncclAllReduce(counters, counters, num_counters, ncclUint64, ncclSum, z->comm, g_stream));
    if (num_sums > 0) ncclCheck(ncclAllReduce(sums, sums, num_sums, ncclFloat64, ncclSum, z->comm, g_stream));
    ncclCheck(ncclGroupEnd());
}

// Step 2: grads (shard * size, padding zero) -> this rank's slice holds the sum over ranks.
inline void zero_reduce_scatter_grads(ZeroShard* z, float* grads) {
    ncclCheck(ncclReduceScatter(grads, grads + (size_t)z->rank * z->shard, z->shard, ncclFloat, ncclSum, z->comm, g_stream));
}

// Step 3: per-block partial sums of squares (n doubles), summed over ranks in place.
inline void zero_sum_partials(ZeroShard* z, double* partials, int n) {
    ncclCheck(ncclAllReduce(partials, partials, n, ncclFloat64, ncclSum, z->comm, g_stream));
}

// Step 5: weights (shard * size floatX) from every rank's slice to all of it on every rank.
inline void zero_all_gather_weights(ZeroShard* z, floatX* weights) {
    ncclCheck(ncclAllGather(weights + (size_t)z->rank * z->shard, weights, z->shard, NCCL_FLOATX, z->comm, g_stream));
}

// Step 5, the slopes: live (num_slopes fp32, what the forward reads) <- the master slopes,
// slopes_lo being their index in the flat array; each rank adds the ones in its slice (master
// holds the slice only, master_slice[i] is parameter lo + i) into a zeroed buffer, then sums.
inline void zero_sync_slopes(ZeroShard* z, float* live, const float* master_slice, size_t slopes_lo, int num_slopes) {
    if (num_slopes == 0) return;
    cudaCheck(cudaMemsetAsync(live, 0, num_slopes * sizeof(float), g_stream));
    size_t first = std::max(slopes_lo, z->lo), end = std::min(slopes_lo + num_slopes, z->hi);
    if (end > first)
        cudaCheck(cudaMemcpyAsync(live + (first - slopes_lo), master_slice + (first - z->lo), (end - first) * sizeof(float),
                                  cudaMemcpyDeviceToDevice, g_stream));
    ncclCheck(ncclAllReduce(live, live, num_slopes, ncclFloat, ncclSum, z->comm, g_stream));
}

// A device slice (count floats) of every rank -> the whole array on rank 0's host (n floats,
// `full`); other ranks only send. Waits for the stream.
inline void zero_gather_to_root_host(ZeroShard* z, const float* d_slice, float* full) {
    std::vector<float> mine(z->hi - z->lo);
    cudaCheck(cudaStreamSynchronize(g_stream));
    cudaCheck(cudaMemcpy(mine.data(), d_slice, mine.size() * sizeof(float), cudaMemcpyDeviceToHost));
    std::vector<int> counts(z->size), displs(z->size);
    mp_slice_counts(z->n, counts.data(), displs.data());
    mpiCheck(MPI_Gatherv(mine.data(), (int)mine.size(), MPI_FLOAT, full, counts.data(), displs.data(), MPI_FLOAT, 0,
                         MPI_COMM_WORLD));
}

#endif  // USE_MPI
