#include "core/dist/communicator.h"

#include <ATen/ATen.h>
#include <mpi.h>

#include <cstdlib>

#include "core/dist/mpi_util.h"
#include "core/dist/world.h"
#include "core/errors.h"

namespace atspeed {

namespace {

void check_collective_input(const at::Tensor& t, const char* op) {
  ATSPEED_ENSURE(Distributed, t.defined(), op, ": undefined tensor");
}

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  void all_reduce(at::Tensor& t, ReduceOp op) override {
    check_collective_input(t, "all_reduce");
    ATSPEED_ENSURE(Distributed, op == ReduceOp::Sum || t.is_floating_point(), "all_reduce(avg) needs a floating tensor");
  }
  void broadcast(at::Tensor& t, int root) override {
    check_collective_input(t, "broadcast");
    ATSPEED_ENSURE(Distributed, root == 0, "broadcast: root ", root, " outside a 1-rank communicator");
  }
  at::Tensor all_gather(const at::Tensor& t) override {
    check_collective_input(t, "all_gather");
    return t.unsqueeze(0).clone();
  }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<LocalCommunicator>(); }
};

MPI_Datatype mpi_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kChar: return MPI_INT8_T;
    case at::kBool: return MPI_C_BOOL;
    default: return MPI_DATATYPE_NULL;
  }
}

// MPI on CPU tensors. Types MPI lacks (fp16, bf16) are reduced in float32 and converted back.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    if (owned_) {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Comm_free(&comm_);
    }
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    check_input(t, "all_reduce");
    ATSPEED_ENSURE(Distributed, op == ReduceOp::Sum || t.is_floating_point(), "all_reduce(avg) needs a floating tensor, got ",
                   t.scalar_type());
    at::Tensor work = staging(t);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, work.data_ptr(), static_cast<int>(work.numel()), mpi_type(work.scalar_type()),
                            work.scalar_type() == at::kBool ? MPI_LOR : MPI_SUM, comm_));
    if (op == ReduceOp::Avg) work.div_(size_);
    write_back(t, work);
  }

  void broadcast(at::Tensor& t, int root) override {
    check_input(t, "broadcast");
    ATSPEED_ENSURE(Distributed, root >= 0 && root < size_, "broadcast: root ", root, " outside [0, ", size_, ")");
    // Shapes must agree: check the element count first so a mismatch is an error, not a hang.
    int64_t count = t.numel();
    int64_t root_count = count;
    MPI_CHECK(MPI_Bcast(&root_count, 1, MPI_INT64_T, root, comm_));
    // Every rank learns of a mismatch anywhere, so all of them fail together instead of hanging.
    int local_bad = root_count != count, any_bad = 0;
    MPI_CHECK(MPI_Allreduce(&local_bad, &any_bad, 1, MPI_INT, MPI_MAX, comm_));
    ATSPEED_ENSURE(Distributed, !any_bad, "broadcast: tensor sizes differ across ranks (this rank ", rank_, " has ", count,
                   " elements, root ", root, " has ", root_count, ")");
    at::Tensor work = staging(t);
    MPI_CHECK(MPI_Bcast(work.data_ptr(), static_cast<int>(work.numel()), mpi_type(work.scalar_type()), root, comm_));
    write_back(t, work);
  }

  at::Tensor all_gather(const at::Tensor& t) override {
    check_input(t, "all_gather");
    at::Tensor work = staging(t);
    std::vector<int64_t> shape{size_};
    for (auto d : t.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, work.options());
    const int count = static_cast<int>(work.numel());
    MPI_CHECK(MPI_Allgather(work.data_ptr(), count, mpi_type(work.scalar_type()), out.data_ptr(), count,
                            mpi_type(work.scalar_type()), comm_));
    return out.to(t.device(), t.scalar_type());
  }

  void barrier() override { MPI_CHECK(MPI_Barrier(comm_)); }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiCommunicator>(sub, true);
  }

 private:
  void check_input(const at::Tensor& t, const char* op) const {
    check_collective_input(t, op);
    ATSPEED_ENSURE(Distributed, t.numel() < (int64_t{1} << 31), op, ": tensor too large for one MPI call");
  }
  // A contiguous CPU tensor of an MPI-supported type holding t's values. Device tensors are staged
  // through host memory: correct, and enough for tensor parallelism of several ranks on one GPU
  // (NCCL cannot put two ranks on one device); NCCL is the fast path across GPUs.
  static at::Tensor staging(const at::Tensor& t) {
    at::Tensor work = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
    if (mpi_type(work.scalar_type()) == MPI_DATATYPE_NULL) {
      ATSPEED_ENSURE(Distributed, work.is_floating_point(), "mpi communicator: unsupported dtype ", t.scalar_type());
      work = work.to(at::kFloat);
    }
    return work;
  }
  static void write_back(at::Tensor& t, const at::Tensor& work) {
    if (work.data_ptr() != t.data_ptr()) t.copy_(work);
  }

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

void mpi_check(int status, const char* call, const char* file, int line) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(status, text, &len);
  detail::throw_error(ErrorKind::Distributed, file, line, std::string(call) + " failed: " + std::string(text, len));
}

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE");
}

int local_rank() {
  const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  return lr != nullptr ? std::atoi(lr) : 0;
}

int local_cuda_device(int device_count) {
  ATSPEED_ENSURE(Device, device_count > 0, "no CUDA device is available");
  return local_rank() % device_count;
}

bool mpi_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
}

void mpi_initialize() {
  if (mpi_initialized()) return;
  int provided = 0;
  // SERIALIZED: the server's threads may call MPI, one at a time.
  MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  mpi_initialize();
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

#ifndef ATSPEED_WITH_CUDA
bool nccl_available() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(int) {
  ATSPEED_THROW(Distributed, "dist.backend=nccl: this atspeed was built without CUDA/NCCL");
}
#endif

std::unique_ptr<Communicator> make_tp_communicator(Communicator& world, int tp) {
  const World w = World::make(world.rank(), world.size(), tp);
  return world.split(w.dp_rank(), w.tp_rank());
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend) {
  if (backend == "local") return make_local_communicator();
  if (backend == "mpi") return make_mpi_communicator();
  if (backend == "nccl") return make_nccl_communicator(-1);
  ATSPEED_ENSURE(Config, backend == "auto", "dist.backend: unknown backend '", backend, "'");
  return launched_by_mpirun() ? make_mpi_communicator() : make_local_communicator();
}

}  // namespace atspeed
