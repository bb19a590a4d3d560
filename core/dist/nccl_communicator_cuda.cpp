// NCCL communicator on CUDA tensors (compiled only with CUDA). Rank 0 creates the ncclUniqueId
// and broadcasts it over MPI; a single process without mpirun bootstraps alone. Collectives are
// enqueued on the current CUDA stream of the tensor's device, so later torch work on that stream
// sees the results without an explicit synchronisation.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdlib>

#include "core/dist/communicator.h"
#include "core/dist/mpi_util.h"
#include "core/errors.h"

#define NCCL_CHECK(call)                                                                         \
  do {                                                                                           \
    ncclResult_t status_ = (call);                                                               \
    ATSPEED_ENSURE(Distributed, status_ == ncclSuccess, #call " failed: ", ncclGetErrorString(status_)); \
  } while (0)
#define CUDA_CHECK(call)                                                                         \
  do {                                                                                           \
    cudaError_t status_ = (call);                                                                \
    ATSPEED_ENSURE(Device, status_ == cudaSuccess, #call " failed: ", cudaGetErrorString(status_)); \
  } while (0)

namespace atspeed {

namespace {

ncclDataType_t nccl_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: ATSPEED_THROW(Distributed, "nccl communicator: unsupported dtype ", type);
  }
}

class NcclCommunicator final : public Communicator {
 public:
  // mpi_comm: the MPI communicator of the participating ranks (MPI_COMM_NULL: a lone process).
  NcclCommunicator(MPI_Comm mpi_comm, int device) : mpi_comm_(mpi_comm), device_(device) {
    if (mpi_comm_ != MPI_COMM_NULL) {
      MPI_CHECK(MPI_Comm_rank(mpi_comm_, &rank_));
      MPI_CHECK(MPI_Comm_size(mpi_comm_, &size_));
    }
    ncclUniqueId id;
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (mpi_comm_ != MPI_COMM_NULL) MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi_comm_));
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    check_cuda_tensor(t, "all_reduce");
    ATSPEED_ENSURE(Distributed, op == ReduceOp::Sum || t.is_floating_point(), "all_reduce(avg) needs a floating tensor");
    at::Tensor work = t.contiguous();
    c10::cuda::CUDAGuard guard(t.device());
    NCCL_CHECK(ncclAllReduce(work.data_ptr(), work.data_ptr(), work.numel(), nccl_type(work.scalar_type()),
                             op == ReduceOp::Avg ? ncclAvg : ncclSum, comm_, stream()));
    if (work.data_ptr() != t.data_ptr()) t.copy_(work);
  }

  void broadcast(at::Tensor& t, int root) override {
    check_cuda_tensor(t, "broadcast");
    ATSPEED_ENSURE(Distributed, root >= 0 && root < size_, "broadcast: root ", root, " outside [0, ", size_, ")");
    at::Tensor work = t.contiguous();
    c10::cuda::CUDAGuard guard(t.device());
    NCCL_CHECK(ncclBroadcast(work.data_ptr(), work.data_ptr(), work.numel(), nccl_type(work.scalar_type()), root, comm_, stream()));
    if (work.data_ptr() != t.data_ptr()) t.copy_(work);
  }

  at::Tensor all_gather(const at::Tensor& t) override {
    check_cuda_tensor(t, "all_gather");
    at::Tensor work = t.contiguous();
    std::vector<int64_t> shape{size_};
    for (auto d : t.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, work.options());
    c10::cuda::CUDAGuard guard(t.device());
    NCCL_CHECK(ncclAllGather(work.data_ptr(), out.data_ptr(), work.numel(), nccl_type(work.scalar_type()), comm_, stream()));
    return out;
  }

  void barrier() override {
    // An all-reduce of one element orders the GPU streams; MPI orders the processes.
    at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    all_reduce(one, ReduceOp::Sum);
    CUDA_CHECK(cudaStreamSynchronize(stream()));
    if (mpi_comm_ != MPI_COMM_NULL) MPI_CHECK(MPI_Barrier(mpi_comm_));
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    ATSPEED_ENSURE(Distributed, mpi_comm_ != MPI_COMM_NULL || size_ == 1, "nccl split needs MPI");
    if (mpi_comm_ == MPI_COMM_NULL) return std::make_unique<NcclCommunicator>(MPI_COMM_NULL, device_);
    MPI_Comm sub;
    MPI_CHECK(MPI_Comm_split(mpi_comm_, color, key, &sub));
    return std::make_unique<NcclCommunicator>(sub, device_);
  }

 private:
  cudaStream_t stream() const { return at::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)).stream(); }
  void check_cuda_tensor(const at::Tensor& t, const char* op) const {
    ATSPEED_ENSURE(Distributed, t.defined(), op, ": undefined tensor");
    ATSPEED_ENSURE(Distributed, t.is_cuda() && t.device().index() == device_, op, ": the nccl communicator takes tensors on cuda:",
                   device_, " (got ", t.device(), ")");
  }

  MPI_Comm mpi_comm_;
  int device_;
  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(int device) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  ATSPEED_ENSURE(Device, status == cudaSuccess && count > 0, "dist.backend=nccl needs a CUDA GPU, none found (",
                 cudaGetErrorString(status), ")");
  MPI_Comm comm = MPI_COMM_NULL;
  if (launched_by_mpirun()) {
    mpi_initialize();
    comm = MPI_COMM_WORLD;
  }
  if (device < 0) device = local_cuda_device(count);
  ATSPEED_ENSURE(Device, device < count, "cuda device ", device, " does not exist (", count, " devices)");
  return std::make_unique<NcclCommunicator>(comm, device);
}

}  // namespace atspeed
