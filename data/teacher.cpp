#include "data/teacher.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "core/config.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"

namespace fs = std::filesystem;

namespace atspeed {

namespace {

constexpr const char* kTeacherKind = "teacher";

const char* kLogitNames[] = {"gt_logits", "beam_logits"};

void set_meta(CheckpointWriter& w, const TeacherMeta& m) {
  w.set_string_attribute("", "target_fingerprint", m.target_fingerprint);
  w.set_string_attribute("", "split", m.split);
  w.set_string_attribute("", "train_samples", m.train_samples);
  w.set_string_attribute("", "logits_dtype", m.logits_dtype);
  w.set_int_attribute("", "split_samples", m.split_samples);
  w.set_int_attribute("", "chunk_size", m.chunk_size);
  w.set_int_attribute("", "beams", m.beams);
  w.set_int_attribute("", "slots", m.slots);
  w.set_int_attribute("", "vocab_size", m.vocab_size);
  w.set_int_attribute("", "top_k", m.top_k);
  w.set_int_attribute("", "history_len", m.history_len);
  w.set_int_attribute("", "sep_token", m.sep_token);
  w.set_string_attribute("", "prompt_format", m.prompt_format);
}

TeacherMeta get_meta(const CheckpointReader& r) {
  TeacherMeta m;
  auto str = [&](const char* key) {
    auto v = r.string_attribute("", key);
    ATSPEED_ENSURE(Checkpoint, v.has_value(), r.path(), ": teacher part has no attribute '", key, "'");
    return *v;
  };
  auto num = [&](const char* key) {
    auto v = r.int_attribute("", key);
    ATSPEED_ENSURE(Checkpoint, v.has_value(), r.path(), ": teacher part has no attribute '", key, "'");
    return *v;
  };
  m.fingerprint = r.attributes().fingerprint;
  m.target_fingerprint = str("target_fingerprint");
  m.split = str("split");
  m.train_samples = str("train_samples");
  m.logits_dtype = str("logits_dtype");
  m.split_samples = num("split_samples");
  m.chunk_size = num("chunk_size");
  m.beams = num("beams");
  m.slots = num("slots");
  m.vocab_size = num("vocab_size");
  m.top_k = num("top_k");
  m.history_len = num("history_len");
  m.sep_token = num("sep_token");
  m.prompt_format = r.string_attribute("", "prompt_format").value_or("resp");
  return m;
}

at::ScalarType logits_type(const std::string& name) { return name == "float16" ? at::kHalf : at::kFloat; }

// Rebuilds [.., V] logits from descending top-k values and their column indices.
at::Tensor reconstruct(const at::Tensor& values, const at::Tensor& indices, int64_t vocab,
                       const TeacherReadOptions& o) {
  const at::Tensor v = values.to(at::kFloat);
  std::vector<int64_t> shape(v.sizes().begin(), v.sizes().end());
  shape.back() = vocab;
  at::Tensor fill;
  if (o.floor_margin) {
    fill = (std::get<0>(v.min(-1, true)) - *o.floor_margin).expand(shape).contiguous();
  } else {
    fill = at::full(shape, o.fill, v.options());
  }
  return fill.scatter(-1, indices.to(at::kLong), v);
}

}  // namespace

void TeacherMeta::validate() const {
  config_ensure(logits_dtype == "float32" || logits_dtype == "float16", "teacher.dtype",
                "must be float32 or float16, got '" + logits_dtype + "'");
  config_ensure(chunk_size >= 1, "teacher.chunk_size", "must be >= 1");
  config_ensure(beams >= 1, "teacher.beams", "must be >= 1");
  config_ensure(top_k >= 0 && (vocab_size == 0 || top_k <= vocab_size), "teacher.top_k",
                "must be in [0, vocab size]");
  config_ensure(slots >= 2, "teacher.slots", "must be >= 2 (levels + EOS)");
}

std::string TeacherMeta::difference(const TeacherMeta& o) const {
  auto s = [](const char* k, const std::string& a, const std::string& b) {
    return a == b ? std::string() : fmt::format("{}: '{}' vs '{}'", k, a, b);
  };
  auto i = [](const char* k, int64_t a, int64_t b) {
    return a == b ? std::string() : fmt::format("{}: {} vs {}", k, a, b);
  };
  for (const std::string& d :
       {s("fingerprint", fingerprint, o.fingerprint), s("target_fingerprint", target_fingerprint, o.target_fingerprint),
        s("split", split, o.split), s("train_samples", train_samples, o.train_samples),
        s("logits_dtype", logits_dtype, o.logits_dtype), i("split_samples", split_samples, o.split_samples),
        i("chunk_size", chunk_size, o.chunk_size), i("beams", beams, o.beams), i("slots", slots, o.slots),
        i("vocab_size", vocab_size, o.vocab_size), i("top_k", top_k, o.top_k),
        i("history_len", history_len, o.history_len), i("sep_token", sep_token, o.sep_token),
        s("prompt_format", prompt_format, o.prompt_format)})
    if (!d.empty()) return d;
  return "";
}

int64_t TeacherChunk::size() const { return sample_index.defined() ? sample_index.size(0) : 0; }

std::string teacher_part_path(const std::string& dir, const std::string& split, int64_t part) {
  return (fs::path(dir) / split / fmt::format("part-{:06d}.h5", part)).string();
}

void write_teacher_part(const std::string& dir, const TeacherMeta& meta, int64_t part, const TeacherChunk& c,
                        int deflate) {
  meta.validate();
  const int64_t n = c.size();
  const int64_t first = part * meta.chunk_size;
  ATSPEED_CHECK(part >= 0 && part < meta.num_parts(), "teacher part ", part, " outside 0..", meta.num_parts() - 1);
  ATSPEED_CHECK(n == std::min(meta.chunk_size, meta.split_samples - first), "teacher part ", part, " has ", n,
                " samples");
  ATSPEED_CHECK(c.beams.dim() == 3 && c.beams.size(1) == meta.beams && c.beams.size(2) == meta.slots,
                "teacher beams shape");
  ATSPEED_CHECK(c.gt_logits.size(-1) == meta.vocab_size && c.beam_logits.size(-1) == meta.vocab_size,
                "teacher logits width");
  const std::string path = teacher_part_path(dir, meta.split, part);
  fs::create_directories(fs::path(path).parent_path());
  CheckpointAttributes attrs;
  attrs.kind = kTeacherKind;
  attrs.fingerprint = meta.fingerprint;
  CheckpointWriter w(path, attrs);
  set_meta(w, meta);
  w.set_int_attribute("", "part", part);
  w.set_int_attribute("", "first_sample", first);
  w.set_compression(deflate);
  w.write("sample_index", c.sample_index.to(at::kLong));
  w.write("user", c.user.to(at::kLong));
  w.write("gt_rows", c.gt_rows.to(at::kLong));
  w.write("beams", c.beams.to(at::kLong));
  w.write("num_beams", c.num_beams.to(at::kLong));
  w.write("beam_scores", c.beam_scores.to(at::kFloat));
  const at::ScalarType type = logits_type(meta.logits_dtype);
  // Training reads one sample at a time in random order: one sample per chunk, so a read inflates
  // only its own logits (4 MiB chunks made reads 12x slower on Beauty).
  w.set_chunk_rows(1);
  const at::Tensor logits[] = {c.gt_logits, c.beam_logits};
  for (int k = 0; k < 2; ++k) {
    const at::Tensor x = logits[k].to(type);
    if (meta.top_k > 0) {
      // Top-k of the stored (possibly rounded) values, so reading back gives exactly these values.
      auto [values, indices] = x.to(at::kFloat).topk(meta.top_k, -1, true, true);
      w.write(std::string(kLogitNames[k]) + "_values", values.to(type));
      w.write(std::string(kLogitNames[k]) + "_indices", indices.to(at::kInt));
    } else {
      w.write(kLogitNames[k], x);
    }
  }
  w.commit();
}

std::optional<TeacherMeta> read_teacher_part_meta(const std::string& path) {
  if (!fs::exists(path)) return std::nullopt;
  CheckpointReader r(path, std::string(kTeacherKind));
  return get_meta(r);
}

struct TeacherReader::Impl {
  std::string dir, split;
  TeacherReadOptions options;
  TeacherMeta meta;
  std::vector<CheckpointReader> parts;

  at::Tensor rows(int64_t part, const std::string& name, int64_t begin, int64_t end) const {
    return parts[static_cast<size_t>(part)].read_block(name, 0, begin, end);
  }

  at::Tensor logits(int64_t part, const char* name, int64_t begin, int64_t end) const {
    at::Tensor out;
    if (meta.top_k > 0) {
      out = reconstruct(rows(part, std::string(name) + "_values", begin, end),
                        rows(part, std::string(name) + "_indices", begin, end), meta.vocab_size, options);
    } else {
      out = rows(part, name, begin, end);
    }
    return options.to_float32 ? out.to(at::kFloat) : out;
  }

  TeacherChunk read(int64_t part, int64_t begin, int64_t end) const {
    TeacherChunk c;
    c.sample_index = rows(part, "sample_index", begin, end);
    c.user = rows(part, "user", begin, end);
    c.gt_rows = rows(part, "gt_rows", begin, end);
    c.beams = rows(part, "beams", begin, end);
    c.num_beams = rows(part, "num_beams", begin, end);
    c.beam_scores = rows(part, "beam_scores", begin, end);
    if (options.logits) {
      c.gt_logits = logits(part, "gt_logits", begin, end);
      c.beam_logits = logits(part, "beam_logits", begin, end);
    }
    return c;
  }
};

TeacherReader::TeacherReader(std::string dir, std::string split, TeacherReadOptions options)
    : impl_(std::make_unique<Impl>()) {
  auto& s = *impl_;
  s.dir = std::move(dir);
  s.split = std::move(split);
  s.options = options;
  const fs::path split_dir = fs::path(s.dir) / s.split;
  ATSPEED_ENSURE(Data, fs::is_directory(split_dir), "teacher data: ", split_dir.string(),
                 " does not exist (run `atspeed teacher` first, or set align.teacher='' for the online teacher)");
  const std::string first = teacher_part_path(s.dir, s.split, 0);
  auto m0 = read_teacher_part_meta(first);
  ATSPEED_ENSURE(Data, m0.has_value(), "teacher data: ", first, " is missing (incomplete teacher run?)");
  s.meta = *m0;
  for (int64_t p = 0; p < s.meta.num_parts(); ++p) {
    const std::string path = teacher_part_path(s.dir, s.split, p);
    ATSPEED_ENSURE(Data, fs::exists(path), "teacher data: ", path, " is missing: the split has ", s.meta.num_parts(),
                   " parts; rerun `atspeed teacher` with the same settings to finish it");
    s.parts.emplace_back(path, std::string(kTeacherKind));
    const std::string diff = get_meta(s.parts.back()).difference(s.meta);
    ATSPEED_ENSURE(Data, diff.empty(), "teacher data: ", path, " disagrees with ", first, " (", diff,
                   "): parts of different teacher runs are mixed");
  }
}
TeacherReader::~TeacherReader() = default;
TeacherReader::TeacherReader(TeacherReader&&) noexcept = default;
TeacherReader& TeacherReader::operator=(TeacherReader&&) noexcept = default;

const TeacherMeta& TeacherReader::meta() const { return impl_->meta; }
int64_t TeacherReader::size() const { return impl_->meta.split_samples; }

TeacherChunk TeacherReader::part(int64_t index) const {
  ATSPEED_CHECK(index >= 0 && index < impl_->meta.num_parts(), "teacher part ", index);
  const int64_t n = std::min(impl_->meta.chunk_size, impl_->meta.split_samples - index * impl_->meta.chunk_size);
  return impl_->read(index, 0, n);
}

TeacherChunk TeacherReader::get(const std::vector<int64_t>& indices) const {
  const auto& m = impl_->meta;
  std::vector<TeacherChunk> rows;
  rows.reserve(indices.size());
  for (int64_t i : indices) {
    ATSPEED_ENSURE(Data, i >= 0 && i < m.split_samples, "teacher data ", impl_->dir, "/", impl_->split, ": sample ", i,
                   " outside its ", m.split_samples, " samples");
    const int64_t p = i / m.chunk_size, r = i % m.chunk_size;
    rows.push_back(impl_->read(p, r, r + 1));
  }
  TeacherChunk out;
  auto cat = [&](at::Tensor TeacherChunk::*field) {
    std::vector<at::Tensor> v;
    for (const auto& c : rows) v.push_back(c.*field);
    if (v.empty() || v.front().defined()) out.*field = at::cat(v, 0);  // undefined: logits not read
  };
  for (auto f : {&TeacherChunk::sample_index, &TeacherChunk::user, &TeacherChunk::gt_rows, &TeacherChunk::beams,
                 &TeacherChunk::num_beams, &TeacherChunk::beam_scores, &TeacherChunk::gt_logits,
                 &TeacherChunk::beam_logits})
    cat(f);
  return out;
}

void TeacherReader::check_fingerprints(const std::string& item_fingerprint,
                                       const std::string& target_fingerprint) const {
  const auto& m = impl_->meta;
  ATSPEED_ENSURE(Data, item_fingerprint.empty() || m.fingerprint == item_fingerprint, "teacher data ", impl_->dir,
                 ": built for item index '", m.fingerprint, "', the dataset has '", item_fingerprint, "'");
  ATSPEED_ENSURE(Data, target_fingerprint.empty() || m.target_fingerprint == target_fingerprint, "teacher data ",
                 impl_->dir, ": built by target '", m.target_fingerprint, "', the given target is '",
                 target_fingerprint, "'");
}

}  // namespace atspeed
