// Teacher data files (data/teacher.h) and train-draft's objective (train/draft_objective.h) on a
// tiny synthetic dataset with a random target: round trip (float32, float16, top-k), fingerprint
// checks, the slot forward against plain per-row forwards, and every objective training a few steps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "core/config.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/model/model_io.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/samples.h"
#include "data/teacher.h"
#include "tests/test_models.h"
#include "tests/test_util.h"
#include "train/draft_config.h"
#include "train/draft_objective.h"
#include "train/teacher_model.h"
#include "train/trainer.h"

namespace atspeed {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> tiny_overrides(const test::TempDir& tmp, const std::string& run) {
  return {"data=synthetic", "data.dir=" + tmp.str("data"), "data.synthetic.users=120", "data.synthetic.items=100",
          "data.history_len=5", "model.hidden_size=16", "model.intermediate_size=32", "model.num_hidden_layers=2",
          "model.num_attention_heads=2", "model.num_key_value_heads=1", "run.out_dir=" + tmp.str(run),
          "train=draft", "train.global_batch=8", "train.micro_batch=4", "train.warmup_steps=1", "train.max_steps=4",
          "train.lr=3e-3", "train.max_valid_samples=8", "train.checkpoint_every=0", "train.eval_batch=8",
          "align.beams=4", "run.threads=1"};
}

TeacherChunk some_chunk(const Dataset& ds, int64_t n, int64_t K, model::LlamaModel target, bool logits = true) {
  const PromptFormat format(ds.catalog, PromptLayout{});
  static std::vector<Sample> samples;
  samples = make_train_samples(ds, TrainSamples::Last, 5);
  std::vector<const Sample*> rows;
  for (int64_t i = 0; i < n; ++i) rows.push_back(&samples[static_cast<size_t>(i)]);
  train::TeacherComputer computer(target, ds.catalog, K, 3, at::kCPU);
  TeacherChunk c = computer.compute(rows, format, false, logits);
  c.sample_index = torch::arange(n, torch::kLong);
  return c;
}

TEST(TeacherData, SlotForwardMatchesPlainForwards) {
  at::set_num_threads(1);
  const int64_t V = 40;
  auto m = test::random_model(V, 5);
  torch::NoGradGuard g;
  const std::vector<std::vector<int64_t>> prompts = {{1, 7, 8, 9}, {1, 10, 11}};
  const at::Tensor rows = torch::randint(5, V, {2, 3, 4}, torch::kLong);
  const at::Tensor got = train::row_slot_logits(*m, prompts, rows, at::kCPU);  // [2, 3, 4, V]
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t r = 0; r < 3; ++r) {
      std::vector<int64_t> seq = prompts[static_cast<size_t>(b)];
      for (int64_t j = 0; j < 3; ++j) seq.push_back(rows[b][r][j].item<int64_t>());
      const auto T = static_cast<int64_t>(seq.size());
      const at::Tensor logits =
          m->forward(torch::tensor(seq).view({1, T}), torch::arange(T).view({1, T}), model::causal_mask(1, T, 0, at::kFloat, at::kCPU))[0];
      const int64_t L = static_cast<int64_t>(prompts[static_cast<size_t>(b)].size());
      for (int64_t s = 0; s < 4; ++s)
        EXPECT_TRUE(at::allclose(got[b][r][s], logits[L - 1 + s].to(at::kFloat), 1e-4, 1e-5)) << b << r << s;
    }
}

TEST(TeacherData, RoundTripFullHalfTopKAndFingerprints) {
  at::set_num_threads(1);
  test::TempDir tmp;
  const Config config = Config::compose(find_config_dir(""), "config", tiny_overrides(tmp, "run"));
  const Dataset ds = load_dataset(read_section<DataConfig>(config, "data"));
  const int64_t V = ds.catalog->vocab().size(), K = 4, n = 5;
  auto target = test::random_model(V, 9);
  const TeacherChunk c = some_chunk(ds, n, K, target);
  // Without logits (the online teacher of seqkd): the same beams, no slot forward.
  const TeacherChunk lean_online = some_chunk(ds, n, K, target, false);
  EXPECT_TRUE(at::equal(lean_online.beams, c.beams));
  EXPECT_TRUE(at::equal(lean_online.beam_scores, c.beam_scores));
  EXPECT_FALSE(lean_online.gt_logits.defined());
  EXPECT_FALSE(lean_online.beam_logits.defined());
  ASSERT_EQ(c.beams.sizes(), (std::vector<int64_t>{n, K, 5}));
  EXPECT_TRUE((c.beams.select(2, 4) == 2).all().item<bool>());  // rows end with EOS
  EXPECT_TRUE(at::equal(c.beam_logits.select(2, 0).select(1, 1), c.gt_logits.select(1, 0)));  // shared slot 0
  TeacherMeta m;
  m.fingerprint = ds.catalog->fingerprint();
  m.target_fingerprint = model::parameter_fingerprint(*target);
  m.split = "train";
  m.train_samples = "last";
  m.split_samples = n;
  m.chunk_size = 3;
  m.beams = K;
  m.slots = 5;
  m.vocab_size = V;
  auto part_of = [&](int64_t p) {
    const int64_t b = p * 3, e = std::min<int64_t>(n, b + 3);
    TeacherChunk x;
    for (auto f : {&TeacherChunk::sample_index, &TeacherChunk::user, &TeacherChunk::gt_rows, &TeacherChunk::beams,
                   &TeacherChunk::num_beams, &TeacherChunk::beam_scores, &TeacherChunk::gt_logits,
                   &TeacherChunk::beam_logits})
      x.*f = (c.*f).narrow(0, b, e - b);
    return x;
  };
  for (const std::string dtype : {"float32", "float16"})
    for (int64_t top_k : {int64_t{0}, int64_t{7}}) {
      const std::string dir = tmp.str("t_" + dtype + std::to_string(top_k));
      m.logits_dtype = dtype;
      m.top_k = top_k;
      write_teacher_part(dir, m, 1, part_of(1));
      EXPECT_THROW(TeacherReader(dir, "train"), Error);  // part 0 missing: incomplete
      write_teacher_part(dir, m, 0, part_of(0));
      const TeacherReader r(dir, "train");
      EXPECT_EQ(r.meta().difference(m), "");
      const TeacherChunk back = r.get({0, 1, 2, 3, 4});
      EXPECT_TRUE(at::equal(back.beams, c.beams));
      EXPECT_TRUE(at::equal(back.user, c.user));
      EXPECT_TRUE(at::equal(back.gt_rows, c.gt_rows));
      EXPECT_TRUE(at::equal(back.beam_scores, c.beam_scores));
      // Beams only (seqkd): the same rows, and no logits read.
      TeacherReadOptions beams_only;
      beams_only.logits = false;
      const TeacherChunk lean = TeacherReader(dir, "train", beams_only).get({0, 1, 2, 3, 4});
      EXPECT_TRUE(at::equal(lean.beams, c.beams));
      EXPECT_TRUE(at::equal(lean.user, c.user));
      EXPECT_FALSE(lean.gt_logits.defined());
      EXPECT_FALSE(lean.beam_logits.defined());
      const auto rounded = [&](const at::Tensor& x) { return dtype == "float16" ? x.to(at::kHalf).to(at::kFloat) : x; };
      if (top_k == 0) {
        EXPECT_TRUE(at::equal(back.gt_logits, rounded(c.gt_logits)));
        EXPECT_TRUE(at::equal(back.beam_logits, rounded(c.beam_logits)));
      } else {
        // The kept columns are exact, the rest -inf.
        const at::Tensor full = rounded(c.beam_logits);
        const at::Tensor kept = std::get<1>(full.topk(top_k, -1));
        EXPECT_TRUE(at::equal(back.beam_logits.gather(-1, kept), full.gather(-1, kept)));
        EXPECT_EQ(torch::isinf(back.beam_logits).sum().item<int64_t>(), full.numel() / V * (V - top_k));
        TeacherReadOptions floor;
        floor.floor_margin = 10.0f;
        const TeacherChunk f = TeacherReader(dir, "train", floor).get({2});
        EXPECT_TRUE(torch::isfinite(f.gt_logits).all().item<bool>());
        EXPECT_NEAR(f.gt_logits.min().item<float>(), std::get<0>(f.gt_logits.topk(top_k, -1)).min().item<float>() - 10, 1e-4);
      }
      EXPECT_NO_THROW(r.check_fingerprints(ds.catalog->fingerprint(), m.target_fingerprint));
      EXPECT_THROW(r.check_fingerprints("other", ""), Error);
      EXPECT_THROW(r.check_fingerprints("", model::parameter_fingerprint(*test::random_model(V, 10))), Error);
    }
  // Mixing parts of different runs is refused.
  m.logits_dtype = "float32";
  m.top_k = 0;
  TeacherMeta other = m;
  other.target_fingerprint = "fnv1a64:0";
  write_teacher_part(tmp.str("mixed"), m, 0, part_of(0));
  write_teacher_part(tmp.str("mixed"), other, 1, part_of(1));
  EXPECT_THROW(TeacherReader(tmp.str("mixed"), "train"), Error);
}

// Every objective trains a few steps (online teacher from a random target); CE decreases.
TEST(DraftObjective, EveryObjectiveTrainsAFewSteps) {
  at::set_num_threads(1);
  test::TempDir tmp;
  for (const std::string obj : {"ce", "atspeed_s", "atspeed_r", "wordkd", "tvdkd", "seqkd", "atspeed_s_norm"}) {
    auto overrides = tiny_overrides(tmp, "run_" + obj);
    overrides.push_back("align.objective=" + obj);
    overrides.push_back("align.target=unused");
    if (obj == "ce") overrides.push_back("train.max_steps=8");
    const Config config = Config::compose(find_config_dir(""), "config", overrides);
    const Dataset ds = load_dataset(read_section<DataConfig>(config, "data"));
    const auto align = read_section<AlignConfig>(config, "align");
    auto comm = make_local_communicator();
    train::Trainer trainer(config, ds, *comm, "draft", TrainSamples::Last);
    auto target = test::random_model(ds.catalog->vocab().size(), 9);
    auto online = obj == "ce" ? nullptr
                              : std::make_unique<train::TeacherComputer>(target, ds.catalog, align.beams, 8, at::kCPU);
    train::DraftObjective objective(align, ds.catalog, PromptLayout{}, trainer, std::move(online));
    trainer.set_objective(objective.objective());
    const auto r = trainer.run();
    ASSERT_FALSE(r.steps.empty()) << obj;
    for (const auto& s : r.steps) EXPECT_TRUE(std::isfinite(s.loss) && std::isfinite(s.grad_norm)) << obj;
    EXPECT_TRUE(std::isfinite(r.best_metric)) << obj;
    if (obj == "ce") EXPECT_LT(r.steps.back().loss, r.steps.front().loss);
    EXPECT_TRUE(fs::exists(tmp.str("run_" + obj) + "/last.h5"));
  }
}

}  // namespace
}  // namespace atspeed
