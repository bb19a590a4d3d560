// Collective communication over the processes of a World, on tensors.
//   Local: one process; collectives are identities (all_gather stacks the one input).
//   Mpi:   OpenMPI (bootstraps every multi-process run); device tensors are staged through host memory.
//   Nccl:  NCCL on CUDA tensors, its unique id broadcast over MPI (built only with CUDA).
// Every rank of a communicator must call the same collectives in the same order with tensors of
// the same shape and dtype; broadcast's receivers must pass a tensor of the right shape.
// Failures (MPI/NCCL status codes, wrong tensor device or layout) throw Error(Distributed).
#pragma once

#include <memory>
#include <string>

namespace at {
class Tensor;
}

namespace atspeed {

enum class ReduceOp { Sum, Avg };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi" or "nccl"

  // In place: every rank ends with the elementwise sum (or mean) over ranks. Avg needs a floating dtype.
  virtual void all_reduce(at::Tensor& tensor, ReduceOp op) = 0;
  // In place: every rank ends with root's tensor.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  // Returns [size, *tensor.shape]: row r is rank r's tensor.
  virtual at::Tensor all_gather(const at::Tensor& tensor) = 0;
  virtual void barrier() = 0;
  // A sub-communicator of the ranks passing the same color, ordered by key (MPI_Comm_split).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
};

std::unique_ptr<Communicator> make_local_communicator();

// MPI lifetime: initialise once per process (idempotent), finalised at exit.
// launched_by_mpirun() tells from the environment whether this process was started by mpirun.
bool launched_by_mpirun();

// The one rule for which GPU a process uses: its node-local rank (OMPI_COMM_WORLD_LOCAL_RANK under
// mpirun, else 0) modulo the `device_count` GPUs it sees. Training, NCCL and serving all use it.
int local_rank();
int local_cuda_device(int device_count);
void mpi_initialize();
bool mpi_initialized();
std::unique_ptr<Communicator> make_mpi_communicator();  // over MPI_COMM_WORLD; initialises MPI

// True when atspeed was built with CUDA and NCCL.
bool nccl_available();
// NCCL over all ranks of MPI_COMM_WORLD (or this process alone when not under mpirun), on CUDA
// device `device` (-1: local rank modulo the device count).
std::unique_ptr<Communicator> make_nccl_communicator(int device = -1);

// "auto": mpi when launched by mpirun, else local; "local", "mpi", "nccl" as named.
std::unique_ptr<Communicator> make_communicator(const std::string& backend);

// The tensor-parallel group of this rank when `world` is split into groups of tp adjacent ranks
// (World::make(world.rank(), world.size(), tp): ranks [d*tp, (d+1)*tp) form data-parallel replica
// d's group, ordered by tp rank). Collective over `world`: every rank must call it. tp must divide
// world.size() (Error(Distributed) otherwise). The group is of world's backend.
std::unique_ptr<Communicator> make_tp_communicator(Communicator& world, int tp);

}  // namespace atspeed
