// Precompiled header shared by targets that use libtorch (each TU that includes torch costs ~20 s
// and ~1 GB to compile without it).
#pragma once
#include <torch/torch.h>
