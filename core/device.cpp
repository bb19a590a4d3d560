#include "core/device.h"

#include <torch/cuda.h>

#include "core/errors.h"

namespace atspeed {

c10::Device resolve_device(const std::string& name, const std::string& key) {
  if (name == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    ATSPEED_ENSURE(Device, torch::cuda::is_available(), key, " = ", name, " but no CUDA device is available");
  }
  return c10::Device(name);
}

}  // namespace atspeed
