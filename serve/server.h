// Server construction and its run loop (DESIGN §3 "Server"), tensor parallelism included; the
// command (launch/cmd_serve.cpp) loads the config, the dataset and the models and hands them over.
//
//   block_stop_signals()   first, before any thread exists: SIGTERM/SIGINT are then only seen by
//                          run_server's sigwait (libtorch's pools, the engine and httplib's workers
//                          inherit the mask)
//   ServingTopology::make  checks ranks against dist.tp, builds the tp group (NCCL across GPUs, MPI
//                          otherwise) and picks this rank's shard device
//   run_server()           rank 0: engine + HTTP (+ BroadcastDecoder when tp > 1) until a stop
//                          signal, answering in-flight requests, then releasing the workers;
//                          ranks > 0: run_worker() until rank 0's stop
#pragma once

#include <c10/core/Device.h>
#include <signal.h>

#include <memory>
#include <string>

#include "serve/decoder.h"
#include "serve/request.h"
#include "serve/serve_config.h"

namespace atspeed {
class Communicator;
class ItemCatalog;
}  // namespace atspeed

namespace atspeed::serve {

// Blocks SIGTERM and SIGINT in the calling thread and returns the set (for run_server).
sigset_t block_stop_signals();

struct ServingTopology {
  std::unique_ptr<Communicator> control;  // every rank: MPI under mpirun, else local (batch broadcasts)
  std::unique_ptr<Communicator> tp_group; // tp > 1: the model's all-reduces (NCCL or MPI); else null
  int rank = 0, tp = 1;
  c10::Device device = c10::kCPU;         // where this rank's shard lives

  // One tp group spanning every rank (a server per group would bind one port twice). Error(Config)
  // naming dist.tp / dist.backend for rank counts that do not fit. device_name: decode.device.
  static ServingTopology make(int tp, const std::string& backend, const std::string& device_name);
};

// Serves until stopped (see the header comment). `decoder` decodes on this rank; the others
// describe the answers. startup_line: logged before the "serving on" line.
void run_server(ServingTopology& topo, Decoder& decoder, const ServeConfig& sc, const RequestLimits& limits,
                const ItemCatalog& catalog, const sigset_t& stop_signals, const std::string& startup_line);

}  // namespace atspeed::serve
