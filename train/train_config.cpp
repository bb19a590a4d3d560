#include "train/train_config.h"

namespace atspeed {

void TrainConfig::read(ConfigSection& s) {
  s.get("name", name)
      .get("kind", kind)
      .get("lr", lr)
      .get("warmup_steps", warmup_steps)
      .get("weight_decay", weight_decay)
      .get("beta1", beta1)
      .get("beta2", beta2)
      .get("eps", eps)
      .get("grad_clip", grad_clip)
      .get("global_batch", global_batch)
      .get("micro_batch", micro_batch)
      .get("epochs", epochs)
      .get("max_steps", max_steps)
      .get("metric", metric)
      .get("patience", patience)
      .get("eval_every", eval_every)
      .get("max_valid_samples", max_valid_samples)
      .get("eval_batch", eval_batch)
      .get("log_every", log_every)
      .get("checkpoint_every", checkpoint_every)
      .get("checkpoint_dir", checkpoint_dir)
      .get("resume", resume)
      .get("bucket_mb", bucket_mb)
      .get("device", device);
}

void TrainConfig::validate() const {
  config_ensure(kind == "auto" || kind == "target" || kind == "draft", "train.kind",
                "must be auto, target or draft (got '" + kind + "')");
  config_ensure(lr > 0, "train.lr", "must be > 0");
  config_ensure(warmup_steps >= 0, "train.warmup_steps", "must be >= 0");
  config_ensure(weight_decay >= 0, "train.weight_decay", "must be >= 0");
  config_ensure(beta1 >= 0 && beta1 < 1, "train.beta1", "must be in [0, 1)");
  config_ensure(beta2 >= 0 && beta2 < 1, "train.beta2", "must be in [0, 1)");
  config_ensure(eps > 0, "train.eps", "must be > 0");
  config_ensure(grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 = no clipping)");
  config_ensure(micro_batch > 0, "train.micro_batch", "must be > 0");
  config_ensure(global_batch > 0 && global_batch % micro_batch == 0, "train.global_batch",
                "must be a positive multiple of train.micro_batch (" + std::to_string(micro_batch) + ")");
  config_ensure(epochs > 0, "train.epochs", "must be > 0");
  config_ensure(max_steps >= 0, "train.max_steps", "must be >= 0 (0 = no limit)");
  config_ensure(metric == "valid_loss", "train.metric", "unknown metric '" + metric + "' (valid_loss)");
  config_ensure(patience >= 0, "train.patience", "must be >= 0 (0 = no early stopping)");
  config_ensure(eval_every >= 0, "train.eval_every", "must be >= 0 (0 = each epoch)");
  config_ensure(max_valid_samples >= 0, "train.max_valid_samples", "must be >= 0 (0 = all)");
  config_ensure(eval_batch > 0, "train.eval_batch", "must be > 0");
  config_ensure(log_every > 0, "train.log_every", "must be > 0");
  config_ensure(checkpoint_every >= 0, "train.checkpoint_every", "must be >= 0 (0 = epoch ends only)");
  config_ensure(bucket_mb > 0, "train.bucket_mb", "must be > 0");
  config_ensure(device == "cpu" || device == "cuda", "train.device", "must be cpu or cuda (got '" + device + "')");
}

std::string TrainConfig::resolved_kind(const std::string& model_name) const {
  if (kind != "auto") return kind;
  return model_name.rfind("draft", 0) == 0 ? "draft" : "target";
}

}  // namespace atspeed
