// Trainer pieces: schedule, AdamW groups, clipping, bucketed all-reduce layout, optimizer state in
// checkpoints, and gradient accumulation equivalence through the real Trainer on a tiny model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <numbers>

#include "core/config.h"
#include "core/config_types.h"
#include "core/dist/communicator.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/progress.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/samples.h"
#include "tests/test_models.h"
#include "tests/test_util.h"
#include "train/optim.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace atspeed {
namespace {

using train::warmup_cosine_factor;

TEST(TrainSchedule, WarmupThenCosineToZero) {
  // HF get_cosine_schedule_with_warmup: step / warmup, then half a cosine over the rest.
  EXPECT_DOUBLE_EQ(warmup_cosine_factor(0, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(warmup_cosine_factor(5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(warmup_cosine_factor(10, 10, 110), 1.0);
  EXPECT_NEAR(warmup_cosine_factor(60, 10, 110), 0.5, 1e-12);
  EXPECT_NEAR(warmup_cosine_factor(35, 10, 110), 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-12);
  EXPECT_NEAR(warmup_cosine_factor(110, 10, 110), 0.0, 1e-12);
  EXPECT_NEAR(warmup_cosine_factor(200, 10, 110), 0.0, 1e-12);  // past the end: stays 0
  EXPECT_DOUBLE_EQ(warmup_cosine_factor(0, 0, 10), 1.0);          // no warm-up
  for (int64_t s = 11; s < 110; ++s) EXPECT_LE(warmup_cosine_factor(s, 10, 110), warmup_cosine_factor(s - 1, 10, 110));
}

model::LlamaOptions tiny_options() {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  return model::LlamaOptions::from_config(c);
}

TEST(TrainOptim, NoWeightDecayOnNormWeights) {
  torch::manual_seed(1);
  model::LlamaModel m(tiny_options());
  auto opt = train::make_adamw(*m, {1e-3, 0.1, 0.9, 0.999, 1e-8});
  ASSERT_EQ(opt->param_groups().size(), 2u);
  const auto& g0 = opt->param_groups()[0];
  const auto& g1 = opt->param_groups()[1];
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(g0.options()).weight_decay(), 0.1);
  EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(g1.options()).weight_decay(), 0.0);
  for (const auto& p : g0.params()) EXPECT_EQ(p.dim(), 2);
  // 2 layers x 2 norms + the final norm.
  EXPECT_EQ(g1.params().size(), 5u);
  for (const auto& p : g1.params()) EXPECT_EQ(p.dim(), 1);
  EXPECT_EQ(g0.params().size() + g1.params().size(), m->parameters().size());
  // With zero gradients, a step decays only the weight matrices: norms stay exactly 1.
  for (auto& p : m->parameters()) p.mutable_grad() = torch::zeros_like(p);
  const auto w_before = m->lm_head->weight.clone();
  train::set_learning_rate(*opt, 0.5);
  opt->step();
  EXPECT_TRUE(torch::allclose(m->lm_head->weight, w_before * (1 - 0.5 * 0.1)));
  EXPECT_TRUE(torch::equal(m->model->norm->weight, torch::ones_like(m->model->norm->weight)));
  for (const auto& g : opt->param_groups())
    EXPECT_DOUBLE_EQ(static_cast<const torch::optim::AdamWOptions&>(g.options()).lr(), 0.5);
}

TEST(TrainOptim, ClipGradNormGlobal) {
  auto a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  EXPECT_NEAR(train::clip_grad_norm({a, b}, 10.0), 5.0, 1e-9);  // under the limit: unchanged
  EXPECT_FLOAT_EQ(a.grad()[0].item<float>(), 3.0f);
  EXPECT_NEAR(train::clip_grad_norm({a, b}, 1.0), 5.0, 1e-9);
  const double after = std::sqrt(a.grad().pow(2).sum().item<double>() + b.grad().pow(2).sum().item<double>());
  EXPECT_NEAR(after, 1.0, 1e-5);
  EXPECT_NEAR(a.grad()[0].item<float>() / b.grad()[0].item<float>(), 0.75, 1e-6);  // direction kept
}

TEST(TrainOptim, AllReduceGradientsLocalIsIdentity) {
  auto comm = make_local_communicator();
  auto a = torch::zeros({3}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({1.0f, 2.0f, 3.0f});
  train::all_reduce_gradients({a}, *comm, ReduceOp::Sum, 4);
  EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({1.0f, 2.0f, 3.0f})));
}

TEST(TrainOptim, OptimizerStateRoundTrip) {
  test::TempDir tmp;
  torch::manual_seed(2);
  model::LlamaModel m(tiny_options());
  auto opt = train::make_adamw(*m, {});
  for (auto& p : m->parameters()) p.mutable_grad() = torch::randn_like(p);
  opt->step();
  opt->step();
  {
    CheckpointWriter w(tmp.str("o.h5"), CheckpointAttributes{});
    train::write_optimizer_state(w, *opt, *m);
    w.commit();
  }
  torch::manual_seed(2);
  model::LlamaModel m2(tiny_options());
  auto opt2 = train::make_adamw(*m2, {});
  train::read_optimizer_state(CheckpointReader(tmp.str("o.h5")), *opt2, *m2);
  auto p1 = m->named_parameters(), p2 = m2->named_parameters();
  for (const auto& kv : p1) {
    auto& s1 = static_cast<torch::optim::AdamWParamState&>(*opt->state().at(kv.value().unsafeGetTensorImpl()));
    auto& s2 = static_cast<torch::optim::AdamWParamState&>(*opt2->state().at(p2[kv.key()].unsafeGetTensorImpl()));
    EXPECT_EQ(s1.step(), 2);
    EXPECT_EQ(s2.step(), 2);
    EXPECT_TRUE(torch::equal(s1.exp_avg(), s2.exp_avg())) << kv.key();
    EXPECT_TRUE(torch::equal(s1.exp_avg_sq(), s2.exp_avg_sq())) << kv.key();
  }
}

TEST(TrainConfigTest, DefaultsValidateAndNameKeys) {
  TrainConfig c;
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.resolved_kind("target_small"), "target");
  EXPECT_EQ(c.resolved_kind("draft_small"), "draft");
  c.kind = "target";
  EXPECT_EQ(c.resolved_kind("draft_small"), "target");
  c.global_batch = 100;
  c.micro_batch = 32;
  try {
    c.validate();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("train.global_batch"), std::string::npos) << e.message();
  }
  const Config shipped = Config::compose(find_config_dir(""), "config", {"data=synthetic"});
  const auto t = read_section<TrainConfig>(shipped, "train");
  EXPECT_EQ(t.global_batch, 192);  // rows: one-pass rows carry ~5 items each
  EXPECT_EQ(t.micro_batch, 16);
  EXPECT_EQ(t.epochs, 20);
  EXPECT_THROW(Config::compose(find_config_dir(""), "config", {"data=synthetic", "train.bogus=1"}), Error);
  const Config bad = Config::compose(find_config_dir(""), "config", {"data=synthetic", "train.lr=-1"});
  EXPECT_THROW(read_section<TrainConfig>(bad, "train"), Error);
}

TEST(Progress, RendersFieldsAndDurations) {
  EXPECT_EQ(ProgressBar::format_duration(42), "42s");
  EXPECT_EQ(ProgressBar::format_duration(185), "3m05s");
  EXPECT_EQ(ProgressBar::format_duration(3720), "1h02m");
  EXPECT_EQ(ProgressBar::format_duration(-1), "--");
  EXPECT_EQ(ProgressBar::format_rate(950), "950");
  EXPECT_EQ(ProgressBar::format_rate(12345), "12.3k");
  std::FILE* f = std::tmpfile();
  ProgressOptions o;
  o.force_tty = 0;
  o.plain_interval_s = 1e9;
  {
    ProgressBar bar("train", 10, f, o);
    bar.update(1, "loss 2");       // first update draws
    bar.update(2, "loss 1.9");     // within the interval: nothing
    bar.update(5, "loss 1.5", true);
    EXPECT_NE(bar.render("x").find("5/10 (50%)"), std::string::npos) << bar.render("x");
    bar.finish();
  }
  std::rewind(f);
  std::string text(4096, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), f));
  std::fclose(f);
  EXPECT_NE(text.find("1/10"), std::string::npos) << text;
  EXPECT_EQ(text.find("2/10"), std::string::npos) << text;
  EXPECT_NE(text.find("5/10 (50%)  loss 1.5"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);  // plain lines in a file
}

// A tiny model on a tiny synthetic dataset.
std::vector<std::string> tiny_overrides(const test::TempDir& tmp, const std::string& run) {
  return {"data=synthetic", "data.dir=" + tmp.str("data"), "data.synthetic.users=120", "data.synthetic.items=100",
          "data.history_len=5", "model.hidden_size=16", "model.intermediate_size=32", "model.num_hidden_layers=2",
          "model.num_attention_heads=2", "model.num_key_value_heads=1", "run.out_dir=" + tmp.str(run),
          "train.global_batch=8", "train.warmup_steps=2", "train.max_steps=5", "train.eval_every=0",
          "train.max_valid_samples=16", "train.checkpoint_every=0"};
}

train::TrainResult train_tiny(const test::TempDir& tmp, const std::string& run, std::vector<std::string> extra,
                              std::vector<at::Tensor>* params = nullptr) {
  auto overrides = tiny_overrides(tmp, run);
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  const Config config = Config::compose(find_config_dir(""), "config", overrides);
  const Dataset ds = load_dataset(read_section<DataConfig>(config, "data"));
  auto comm = make_local_communicator();
  train::Trainer trainer(config, ds, *comm, "target");
  auto r = trainer.run();
  if (params)
    for (const auto& p : trainer.model().parameters()) params->push_back(p.detach().clone());
  return r;
}

TEST(Trainer, AccumulationEqualsLargerMicroBatch) {
  test::TempDir tmp;
  at::set_num_threads(1);
  std::vector<at::Tensor> p_big, p_acc;
  const auto big = train_tiny(tmp, "big", {"train.micro_batch=8"}, &p_big);
  const auto acc = train_tiny(tmp, "acc", {"train.micro_batch=4"}, &p_acc);
  ASSERT_EQ(big.steps.size(), 5u);
  ASSERT_EQ(acc.steps.size(), 5u);
  for (size_t i = 0; i < big.steps.size(); ++i) {
    EXPECT_NEAR(big.steps[i].loss, acc.steps[i].loss, 1e-5) << "step " << i + 1;
    EXPECT_NEAR(big.steps[i].grad_norm, acc.steps[i].grad_norm, 1e-4) << "step " << i + 1;
    EXPECT_EQ(big.steps[i].tokens, acc.steps[i].tokens);
  }
  EXPECT_DOUBLE_EQ(big.steps[0].lr, 0.0);  // HF warm-up starts at 0
  EXPECT_GT(big.steps[1].lr, 0.0);
  for (size_t i = 0; i < p_big.size(); ++i) EXPECT_TRUE(torch::allclose(p_big[i], p_acc[i], 1e-5, 1e-6)) << i;
  // The loss goes down on this easy data (lr 1e-3 from scratch, 5 steps: just not up).
  EXPECT_LT(big.steps.back().loss, big.steps[1].loss + 1e-3);
}

// SPEC §9.7: in the stream layout a prefix's row is the head of its user's one-pass row, so for users
// within history_len the one-pass CE (mean over response tokens) is the mean per-prefix CE.
TEST(Trainer, OnePassLossEqualsMeanPerPrefixLoss) {
  test::TempDir tmp;
  auto overrides = tiny_overrides(tmp, "onepass");
  overrides.push_back("data.prompt_format=stream");
  const Config config = Config::compose(find_config_dir(""), "config", overrides);
  const auto data = read_section<DataConfig>(config, "data");
  const Dataset ds = load_dataset(data);
  const PromptFormat format(ds.catalog, data.layout());
  ASSERT_TRUE(format.layout().is_stream());

  // Users whose every prefix fits in history_len (5), with at least 2 targets so rows really pack.
  auto keep = [&](const std::vector<Sample>& all) {
    std::vector<const Sample*> out;
    for (const auto& s : all) {
      const size_t n = ds.train[static_cast<size_t>(s.user)].size();
      if (n >= 3 && n <= static_cast<size_t>(data.history_len) + 1) out.push_back(&s);
    }
    return out;
  };
  const auto prefix_samples = make_train_samples(ds, TrainSamples::AllPrefixes, data.history_len);
  const auto pass_samples = make_train_samples(ds, TrainSamples::OnePass, data.history_len);
  const auto per_prefix = keep(prefix_samples), one_pass = keep(pass_samples);
  ASSERT_GE(one_pass.size(), 5u);
  ASSERT_GT(per_prefix.size(), 2 * one_pass.size());  // one row scores several prefixes

  model::LlamaModel m = test::random_model(ds.catalog->vocab().size());
  const auto ce = train::token_ce_objective(format);
  const std::string split = "train";
  const std::vector<int64_t> no_indices;
  auto mean_loss = [&](const std::vector<const Sample*>& rows, int64_t* units) {
    const train::MicroBatch b{split, no_indices, rows, at::kCPU};
    auto [sum, n] = ce.loss(*m, b);
    *units = ce.units(b);
    EXPECT_EQ(n, *units);
    return sum.item<double>() / static_cast<double>(n);
  };
  int64_t units_prefix = 0, units_pass = 0;
  const double a = mean_loss(per_prefix, &units_prefix), b = mean_loss(one_pass, &units_pass);
  EXPECT_EQ(units_prefix, units_pass);
  EXPECT_NEAR(a, b, 1e-5);
  EXPECT_GT(a, 1.0);  // a random model: the loss is far from 0, so equality is not trivial

  // The resp layout cannot pack rows: a one-pass row there is refused, naming the key.
  const PromptFormat resp(ds.catalog, PromptLayout{});
  const auto resp_ce = train::token_ce_objective(resp);
  try {
    resp_ce.loss(*m, train::MicroBatch{split, no_indices, one_pass, at::kCPU});
    ADD_FAILURE() << "a multi-target row in the resp layout must be refused";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("prompt_format=stream"), std::string::npos) << e.message();
  }
}

TEST(Trainer, OnePassTrainsAndCountsItems) {
  test::TempDir tmp;
  at::set_num_threads(1);
  const auto r = train_tiny(tmp, "onepass", {"train.micro_batch=8", "data.prompt_format=stream",
                                             "data.train_samples=one_pass"});
  ASSERT_EQ(r.steps.size(), 5u);
  for (const auto& s : r.steps) EXPECT_TRUE(std::isfinite(s.loss));
  // A one-pass row holds several targets: a step's tokens exceed 8 single-target rows' (8 x (BOS + 5 codes + EOS) at least).
  EXPECT_GT(r.steps[0].tokens, 8 * 7);
  // one_pass in the resp layout is a config error naming the key.
  try {
    train_tiny(tmp, "bad", {"train.micro_batch=8", "data.prompt_format=resp", "data.train_samples=one_pass"});
    ADD_FAILURE() << "one_pass needs prompt_format=stream";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("data.train_samples"), std::string::npos) << e.message();
  }
}

TEST(Trainer, RejectsTensorParallelism) {
  // Training is data-parallel only: a tp > 1 config is a clear config error before any step.
  test::TempDir tmp;
  try {
    train_tiny(tmp, "tp", {"train.micro_batch=8", "dist.tp=2"});
    ADD_FAILURE() << "dist.tp=2 must be rejected";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config) << e.message();
    EXPECT_NE(e.message().find("dist.tp"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("data-parallel only"), std::string::npos) << e.message();
  }
}

TEST(Trainer, CheckpointsHoldStateAndResumeEqualsUninterrupted) {
  test::TempDir tmp;
  at::set_num_threads(1);
  std::vector<at::Tensor> p_full, p_resumed;
  const auto full = train_tiny(tmp, "full", {"train.micro_batch=4", "train.max_steps=6"}, &p_full);
  // A stop requested before the first step writes last.h5 at step 0 (no optimizer state yet);
  // resuming from it runs all 6 steps. (Mid-run stops are covered through the binary, test_train_cli.)
  train::request_stop(SIGTERM);
  const auto none = train_tiny(tmp, "part", {"train.micro_batch=4", "train.max_steps=6"});
  train::clear_stop_request();
  EXPECT_EQ(none.stop_signal, SIGTERM);
  EXPECT_EQ(none.global_step, 0);
  const auto resumed = train_tiny(tmp, "part", {"train.micro_batch=4", "train.max_steps=6", "train.resume=true"},
                                  &p_resumed);
  ASSERT_EQ(resumed.steps.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(full.steps[i].loss, resumed.steps[i].loss) << i;
  for (size_t i = 0; i < p_full.size(); ++i) EXPECT_TRUE(torch::equal(p_full[i], p_resumed[i])) << i;
  CheckpointReader r(tmp.str("full/last.h5"), std::string("target"));
  EXPECT_EQ(r.int_attribute("trainer_state", "global_step"), 6);
  EXPECT_TRUE(r.contains("optimizer/exp_avg.lm_head.weight"));
  EXPECT_TRUE(r.contains("optimizer/step.model.norm.weight"));
  EXPECT_NE(r.attributes().config_yaml.find("vocab_size: 1029"), std::string::npos);
  EXPECT_FALSE(r.attributes().fingerprint.empty());
  EXPECT_TRUE(std::filesystem::exists(tmp.str("full/best.h5")));
}

}  // namespace
}  // namespace atspeed
