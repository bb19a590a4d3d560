// Steps shared by the training commands (train-target, train-draft).
#pragma once

#include <string>

#include "core/dist/communicator.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace atspeed::launch {

// Rank 0 loads first (it may generate a synthetic dataset); the others wait, then read it.
Dataset load_dataset_rank0_first(const DataConfig& data, Communicator& comm);

// Logs how a run ended; a run stopped by a signal throws ExitRequest{128 + signal}.
void finish_training(const train::TrainResult& r, const std::string& metric);

}  // namespace atspeed::launch
