#include "serve/server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <atomic>
#include <iostream>
#include <thread>
#include <utility>

#include "core/device.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "serve/engine.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/worker.h"

namespace atspeed::serve {
namespace {

// Rank 0 releases the workers on every way out of run_server(): after an error once they are in
// run_worker() (a port already in use, say), they would wait in a broadcast forever and rank 0 in
// MPI_Finalize for them, a hang instead of an exit code. A failing stop broadcast while unwinding
// terminates the process, which mpirun also turns into an exit.
class WorkerRelease {
 public:
  explicit WorkerRelease(BroadcastDecoder* broadcaster) : broadcaster_(broadcaster) {}
  WorkerRelease(const WorkerRelease&) = delete;
  WorkerRelease& operator=(const WorkerRelease&) = delete;
  ~WorkerRelease() { release(); }
  void release() {
    if (broadcaster_ != nullptr) std::exchange(broadcaster_, nullptr)->stop_workers();
  }

 private:
  BroadcastDecoder* broadcaster_;
};

// The device of this rank's shard. NCCL's all-reduces run on cuda:(local rank mod devices), the
// device make_nccl_communicator picks. MPI stages device tensors through host memory, so
// `mpirun -np 2 atspeed serve dist.tp=2 dist.backend=mpi decode.device=cuda` puts both shards on the
// one GPU (NCCL cannot put two ranks on one device): correct, not fast.
c10::Device shard_device(const std::string& backend, const std::string& name) {
  if (backend != "nccl") {
    const c10::Device d = resolve_device(name);
    if (!d.is_cpu()) {
      spdlog::warn("decode.device = {} with dist.backend = {}: the tensor-parallel all-reduces go through host memory; "
                   "dist.backend=nccl is the fast path across GPUs", name, backend);
    }
    return d;
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  ATSPEED_ENSURE(Device, count > 0, "dist.backend=nccl but no CUDA device is available");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_cuda_device(count)));
}

}  // namespace

sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

ServingTopology ServingTopology::make(int tp, const std::string& backend, const std::string& device_name) {
  ServingTopology t;
  t.control = launched_by_mpirun() ? make_mpi_communicator() : make_local_communicator();
  const int world = t.control->size();
  t.rank = t.control->rank();
  t.tp = tp;
  ATSPEED_ENSURE(Config, world == 1 || tp > 1, world, " ranks with dist.tp = 1: every rank would serve the same ",
                 "port; serve tensor-parallel with `mpirun -np ", world, " atspeed serve dist.tp=", world,
                 "`, or start one process per server");
  ATSPEED_ENSURE(Config, tp == world, "dist.tp = ", tp, " but ", world, " ranks: a tensor-parallel server ",
                 "uses every rank as one group; run `mpirun -np ", tp, " atspeed serve dist.tp=", tp, "`");
  ATSPEED_ENSURE(Config, world == 1 || backend != "local", "dist.backend = local with dist.tp = ", tp,
                 ": tensor-parallel serving needs mpi or nccl");
  if (tp > 1) t.tp_group = backend == "nccl" ? make_nccl_communicator(-1) : make_tp_communicator(*t.control, tp);
  t.device = tp > 1 ? shard_device(t.tp_group->backend(), device_name) : resolve_device(device_name);
  return t;
}

void run_server(ServingTopology& topo, Decoder& decoder, const ServeConfig& sc, const RequestLimits& limits,
                const ItemCatalog& catalog, const sigset_t& stop_signals, const std::string& startup_line) {
  if (topo.rank > 0) {
    // A stop signal here stays blocked (pending): rank 0 drains its requests first, then its stop
    // message ends this loop, so every rank exits 0 whether mpirun forwarded the signal or not.
    spdlog::info("tp rank {}/{}: worker ready", topo.rank, topo.tp);
    const int64_t batches = run_worker(*topo.control, decoder);
    spdlog::info("tp rank {}/{}: stopped after {} batches", topo.rank, topo.tp, batches);
    return;
  }
  std::unique_ptr<BroadcastDecoder> broadcaster;
  if (topo.tp > 1) broadcaster = std::make_unique<BroadcastDecoder>(*topo.control, decoder);
  WorkerRelease workers(broadcaster.get());
  Decoder& engine_decoder = broadcaster ? static_cast<Decoder&>(*broadcaster) : decoder;
  ServeMetrics metrics;
  Engine engine(engine_decoder, EngineOptions{sc.max_batch, sc.max_wait_ms, sc.max_queue}, &metrics);
  HttpServer http(engine, catalog, limits,
                  HttpOptions{sc.host, sc.port, sc.max_body_bytes, sc.request_timeout_ms, sc.http_threads}, metrics);
  const int port = http.bind();
  spdlog::info("{}", startup_line);
  // Tests and scripts parse this line for the port (serve.port=0 picks a free one).
  std::cout << "serving on http://" << sc.host << ":" << port << std::endl;

  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (signalled.exchange(true)) return;  // the main thread's wake-up below, not a real signal
    spdlog::info("signal {}: no new connections, answering in-flight requests", sig);
    http.stop();
    // Queued requests are decoded at once (no waiting for batches to fill); their handlers answer
    // them, and only then does serve() return.
    engine.stop();
  });
  http.serve();  // returns after stop(), once the connection threads have finished their requests
  // serve() can also return on its own (a listen failure): wake the waiter so it can be joined.
  if (!signalled.exchange(true)) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  engine.stop();
  // The engine's decode thread has finished: no batch broadcast can follow this one.
  workers.release();
  spdlog::info("stopped");
}

}  // namespace atspeed::serve
