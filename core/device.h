// Device names of the config (decode.device, teacher.device, bench --device) to torch devices.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace atspeed {

// "auto" (cuda when available), "cpu", "cuda", "cuda:N"; Error(Device) naming `key` when CUDA is asked
// for and absent.
c10::Device resolve_device(const std::string& name, const std::string& key = "decode.device");

}  // namespace atspeed
