// dev/cuda/emu/include/nccl.h: the NCCL calls of llmc/zero.cuh on the emulator, done with MPI
// (the emulated "device" memory is host memory, so an MPI collective on it is what NCCL does on a
// GPU). With it, the CUDA trainer's data-parallel path runs under mpirun on the CPU:
//   dev/cuda/emu/run_mpi.sh. Only what zero.cuh uses: sum reductions of float, double and
//   uint64, all-gather of any type (bytes), in place as zero.cuh calls them.
#pragma once
#include <mpi.h>
#include <cstring>

typedef int ncclResult_t;
enum { ncclSuccess = 0, ncclSystemError = 2 };
typedef MPI_Comm ncclComm_t;
struct ncclUniqueId { char internal[128]; };
enum ncclDataType_t { ncclFloat, ncclHalf, ncclBfloat16, ncclFloat64, ncclUint64 };
enum ncclRedOp_t { ncclSum };

inline const char* ncclGetErrorString(ncclResult_t) { return "emulated NCCL error"; }
inline MPI_Datatype emu_nccl_mpi_type(ncclDataType_t t) {
    return t == ncclFloat ? MPI_FLOAT : t == ncclFloat64 ? MPI_DOUBLE : t == ncclUint64 ? MPI_UINT64_T : MPI_DATATYPE_NULL;
}
inline size_t emu_nccl_bytes(ncclDataType_t t) { return t == ncclHalf || t == ncclBfloat16 ? 2 : t == ncclFloat ? 4 : 8; }
inline ncclResult_t emu_nccl_rc(int mpi_rc) { return mpi_rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError; }

inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) { memset(id, 0, sizeof(*id)); return ncclSuccess; }
inline ncclResult_t ncclCommInitRank(ncclComm_t* comm, int, ncclUniqueId, int) { *comm = MPI_COMM_WORLD; return ncclSuccess; }
inline ncclResult_t ncclCommDestroy(ncclComm_t) { return ncclSuccess; }
inline ncclResult_t ncclGroupStart() { return ncclSuccess; }
inline ncclResult_t ncclGroupEnd() { return ncclSuccess; }

inline ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t, ncclComm_t comm,
                                  cudaStream_t) {
    MPI_Datatype mt = emu_nccl_mpi_type(t);
    if (mt == MPI_DATATYPE_NULL) return ncclSystemError;  // zero.cuh sums no 16-bit types
    return emu_nccl_rc(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mt, MPI_SUM, comm));
}

// recv == send + rank * count (zero.cuh's in-place form): MPI leaves the block at the start.
inline ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t,
                                      ncclComm_t comm, cudaStream_t) {
    MPI_Datatype mt = emu_nccl_mpi_type(t);
    if (mt == MPI_DATATYPE_NULL) return ncclSystemError;
    int rc = MPI_Reduce_scatter_block(MPI_IN_PLACE, const_cast<void*>(send), (int)count, mt, MPI_SUM, comm);
    memmove(recv, send, count * emu_nccl_bytes(t));
    return emu_nccl_rc(rc);
}

// send == recv + rank * count (in place)
inline ncclResult_t ncclAllGather(const void*, void* recv, size_t count, ncclDataType_t t, ncclComm_t comm, cudaStream_t) {
    return emu_nccl_rc(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)(count * emu_nccl_bytes(t)), MPI_BYTE, comm));
}
