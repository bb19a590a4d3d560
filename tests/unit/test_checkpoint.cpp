// HDF5 checkpoints: exact round trips of every dtype, groups, attributes, atomic writes, hyperslab
// reads, and a clear Error(Checkpoint) for every way a file can be wrong.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

CheckpointAttributes target_attributes() {
  CheckpointAttributes attrs;
  attrs.kind = "target";
  attrs.config_yaml = "model:\n  name: target_small\n  layers: 2\n";
  attrs.fingerprint = "items:12101:sha1:0123abcd";
  return attrs;
}

// Same dtype, shape and bytes (so NaN payloads, -0.0 and bf16/fp16 patterns count).
::testing::AssertionResult bit_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type())
    return ::testing::AssertionFailure() << "dtype " << a.scalar_type() << " vs " << b.scalar_type();
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  if (ca.numel() && std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) != 0)
    return ::testing::AssertionFailure() << "bytes differ";
  return ::testing::AssertionSuccess();
}

std::map<std::string, at::Tensor> every_dtype() {
  at::manual_seed(7);
  std::map<std::string, at::Tensor> tensors;
  auto floats = at::randn({3, 5});
  floats[0][0] = std::numeric_limits<float>::quiet_NaN();
  floats[0][1] = std::numeric_limits<float>::infinity();
  floats[0][2] = -0.0f;
  floats[0][3] = 1e-40f;  // subnormal
  tensors["float32"] = floats;
  tensors["float64"] = at::randn({4, 2}, at::kDouble) * 1e300;
  tensors["bfloat16"] = (floats * 3.3).to(at::kBFloat16);
  tensors["float16"] = (floats * 3.3).to(at::kHalf);
  tensors["int64"] = at::randint(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), {7},
                                 at::kLong);
  tensors["int32"] = at::randint(-100000, 100000, {2, 3, 4}, at::kInt);
  tensors["int16"] = at::randint(-30000, 30000, {6}, at::kShort);
  tensors["int8"] = at::randint(-128, 127, {6}, at::kChar);
  tensors["uint8"] = at::randint(0, 255, {2, 2}, at::kByte);
  tensors["bool"] = at::rand({3, 3}) > 0.5;
  return tensors;
}

void read_everything(const std::string& path) {
  CheckpointReader reader(path);
  for (const auto& info : reader.list()) reader.read(info.name);
}

// Runs `body` and expects an Error(Checkpoint) whose message contains every one of `parts`.
template <typename F>
void expect_checkpoint_error(F&& body, std::initializer_list<std::string> parts) {
  try {
    body();
    ADD_FAILURE() << "no Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Checkpoint) << e.message();
    for (const auto& part : parts) EXPECT_NE(e.message().find(part), std::string::npos) << "'" << part << "' not in: " << e.message();
  }
}

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(CheckpointTest, EveryDtypeRoundTripsBitExact) {
  TempDir dir;
  const auto path = dir.str("all.h5");
  const auto tensors = every_dtype();
  save_checkpoint(path, target_attributes(), tensors);
  CheckpointReader reader(path);
  ASSERT_EQ(reader.list().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    SCOPED_TRACE(name);
    EXPECT_EQ(reader.info(name).dtype, name);  // each tensor is named after its dtype
    EXPECT_TRUE(bit_equal(reader.read(name), tensor));
  }
  // The convenience loader gives the same.
  const auto loaded = load_checkpoint(path, "target");
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) EXPECT_TRUE(bit_equal(loaded.at(name), tensor)) << name;
  EXPECT_EQ(checkpoint_dtypes().size(), tensors.size());
}

TEST(CheckpointTest, ScalarEmptyNonContiguousAndLargeTensors) {
  TempDir dir;
  const auto path = dir.str("shapes.h5");
  std::map<std::string, at::Tensor> tensors;
  tensors["scalar_f32"] = at::scalar_tensor(3.5f);
  tensors["scalar_i64"] = at::scalar_tensor(int64_t{-42}, at::kLong);
  tensors["scalar_bf16"] = at::scalar_tensor(1.25, at::kBFloat16);
  tensors["empty_1d"] = at::empty({0});
  tensors["empty_rows"] = at::empty({0, 4}, at::kBFloat16);
  tensors["empty_cols"] = at::empty({3, 0}, at::kLong);
  tensors["transposed"] = at::arange(12, at::kFloat).reshape({3, 4}).t();
  tensors["strided"] = at::arange(40, at::kLong).reshape({5, 8}).slice(1, 0, 8, 3);
  // 8 MiB: several chunks, each with its checksum.
  tensors["big"] = at::randn({4096, 512});
  save_checkpoint(path, target_attributes(), tensors);
  CheckpointReader reader(path);
  for (const auto& [name, tensor] : tensors) {
    SCOPED_TRACE(name);
    const auto got = reader.read(name);
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(bit_equal(got, tensor));
    EXPECT_EQ(reader.info(name).shape, std::vector<int64_t>(tensor.sizes().begin(), tensor.sizes().end()));
  }
  EXPECT_EQ(reader.info("scalar_f32").numel(), 1);
  EXPECT_EQ(reader.info("empty_rows").numel(), 0);
}

TEST(CheckpointTest, GroupsNestAndListInWriteOrder) {
  TempDir dir;
  const auto path = dir.str("groups.h5");
  {
    CheckpointWriter writer(path, target_attributes());
    writer.write("model.embed_tokens.weight", at::ones({4, 2}));
    writer.write("model.layers.10.mlp.up_proj.weight", at::ones({2, 2}));
    writer.write("model.layers.2.mlp.up_proj.weight", at::ones({2, 2}) * 2);
    writer.write("optimizer/exp_avg.model.embed_tokens.weight", at::zeros({4, 2}));
    writer.write("optimizer/exp_avg_sq.model.embed_tokens.weight", at::full({4, 2}, 3.0));
    writer.write("trainer_state/rng", at::arange(5, at::kByte));
    writer.write("a/b/c/deep", at::scalar_tensor(int64_t{9}, at::kLong));
    expect_checkpoint_error([&] { writer.write("optimizer/exp_avg.model.embed_tokens.weight", at::ones({1})); },
                            {"already written", path});
    expect_checkpoint_error([&] { writer.write("model.embed_tokens.weight/x", at::ones({1})); }, {"not a group"});
    expect_checkpoint_error([&] { writer.write("bad//name", at::ones({1})); }, {"invalid tensor name"});
    expect_checkpoint_error([&] { writer.write("/abs", at::ones({1})); }, {"invalid tensor name"});
    expect_checkpoint_error([&] { writer.write("c", at::ones({1}, at::kComplexFloat)); }, {"ComplexFloat"});
    writer.commit();
    expect_checkpoint_error([&] { writer.write("late", at::ones({1})); }, {"already committed"});
  }
  CheckpointReader reader(path);
  std::vector<std::string> names;
  for (const auto& info : reader.list()) names.push_back(info.name);
  EXPECT_EQ(names, (std::vector<std::string>{"model.embed_tokens.weight", "model.layers.10.mlp.up_proj.weight",
                                             "model.layers.2.mlp.up_proj.weight",
                                             "optimizer/exp_avg.model.embed_tokens.weight",
                                             "optimizer/exp_avg_sq.model.embed_tokens.weight", "trainer_state/rng",
                                             "a/b/c/deep"}));
  EXPECT_EQ(reader.groups(), (std::vector<std::string>{"optimizer", "trainer_state", "a", "a/b", "a/b/c"}));
  EXPECT_TRUE(reader.contains("optimizer/exp_avg_sq.model.embed_tokens.weight"));
  EXPECT_TRUE(reader.contains("a/b/c/deep"));
  EXPECT_FALSE(reader.contains("optimizer"));  // a group, not a tensor
  EXPECT_FALSE(reader.contains("nope/deeper/x"));
  EXPECT_FALSE(reader.contains("model.embed_tokens.weight/x"));  // below a tensor
  EXPECT_FALSE(reader.contains(""));
  EXPECT_TRUE(bit_equal(reader.read("optimizer/exp_avg_sq.model.embed_tokens.weight"), at::full({4, 2}, 3.0)));
  EXPECT_TRUE(bit_equal(reader.read("trainer_state/rng"), at::arange(5, at::kByte)));
  EXPECT_EQ(reader.read("a/b/c/deep").item<int64_t>(), 9);
}

TEST(CheckpointTest, RootAndGroupAttributes) {
  TempDir dir;
  const auto path = dir.str("attrs.h5");
  auto attrs = target_attributes();
  attrs.config_yaml = std::string(200000, 'x') + "\nend: true\n";  // beyond HDF5's 64 KiB compact limit
  attrs.strings["vocab"] = "pad,bos,eos";
  attrs.ints["num_items"] = 12101;
  attrs.doubles["lr"] = 3e-4;
  {
    CheckpointWriter writer(path, attrs);
    writer.write("w", at::ones({2}));
    writer.set_int_attribute("trainer_state", "step", 1000);
    writer.set_int_attribute("trainer_state", "epoch", 3);
    writer.set_double_attribute("trainer_state", "best_metric", 0.0625);
    writer.set_string_attribute("trainer_state", "best_metric_name", "recall@10");
    writer.set_int_attribute("trainer_state", "step", 1001);  // replaces
    writer.set_string_attribute("", "note", "");                // empty strings are fine
    writer.set_int_attribute("optimizer/adamw", "t", 7);
    writer.commit();
  }
  CheckpointReader reader(path, "target");
  const auto& got = reader.attributes();
  EXPECT_EQ(got.format_version, kCheckpointFormatVersion);
  EXPECT_EQ(got.kind, "target");
  EXPECT_EQ(got.config_yaml, attrs.config_yaml);
  EXPECT_EQ(got.fingerprint, attrs.fingerprint);
  EXPECT_EQ(got.strings, (std::map<std::string, std::string>{{"vocab", "pad,bos,eos"}, {"note", ""}}));
  EXPECT_EQ(got.ints, attrs.ints);
  EXPECT_EQ(got.doubles, attrs.doubles);

  EXPECT_EQ(reader.int_attribute("trainer_state", "step"), 1001);
  EXPECT_EQ(reader.int_attribute("trainer_state", "epoch"), 3);
  EXPECT_EQ(reader.double_attribute("trainer_state", "best_metric"), 0.0625);
  EXPECT_EQ(reader.double_attribute("trainer_state", "epoch"), 3.0);  // ints widen
  EXPECT_EQ(reader.string_attribute("trainer_state", "best_metric_name"), "recall@10");
  EXPECT_EQ(reader.int_attribute("optimizer/adamw", "t"), 7);
  EXPECT_EQ(reader.int_attribute("", "format_version"), 1);
  EXPECT_EQ(reader.string_attribute("", "kind"), "target");
  EXPECT_FALSE(reader.int_attribute("trainer_state", "missing").has_value());
  EXPECT_FALSE(reader.int_attribute("no_such_group", "step").has_value());
  expect_checkpoint_error([&] { reader.string_attribute("trainer_state", "step"); },
                          {"'step'", "trainer_state", "is an int64, expected a string"});
  expect_checkpoint_error([&] { reader.int_attribute("", "kind"); }, {"'kind'", "is a string, expected an int64"});
  const auto state = reader.group_attributes("trainer_state");
  ASSERT_EQ(state.size(), 4u);
  EXPECT_EQ(std::get<int64_t>(state.at("step")), 1001);
  EXPECT_EQ(std::get<std::string>(state.at("best_metric_name")), "recall@10");
  EXPECT_TRUE(reader.group_attributes("nowhere").empty());

  CheckpointAttributes clash = target_attributes();
  clash.strings["kind"] = "draft";
  expect_checkpoint_error([&] { CheckpointWriter w(dir.str("clash.h5"), clash); }, {"collides"});
  EXPECT_FALSE(fs::exists(dir.str("clash.h5")));
}

TEST(CheckpointTest, WriterWithoutCommitLeavesPreviousFileAndNoTemp) {
  TempDir dir;
  const auto path = dir.str("model.h5");
  save_checkpoint(path, target_attributes(), {{"w", at::full({3}, 1.0)}});
  {
    CheckpointWriter writer(path, target_attributes());
    writer.write("w", at::full({3}, 2.0));
    EXPECT_TRUE(fs::exists(writer.temp_path()));
    EXPECT_EQ(writer.temp_path(), path + ".tmp." + std::to_string(::getpid()));
    // destroyed without commit(): a crash or an exception mid-save
  }
  EXPECT_EQ(dir_entries(dir.path()), std::vector<std::string>{"model.h5"});
  EXPECT_TRUE(bit_equal(CheckpointReader(path).read("w"), at::full({3}, 1.0)));

  // An exception in the middle of a save also leaves the old file.
  try {
    CheckpointWriter writer(path, target_attributes());
    writer.write("w", at::full({3}, 2.0));
    writer.write("w", at::full({3}, 2.0));  // duplicate: throws
    writer.commit();
  } catch (const Error&) {
  }
  EXPECT_EQ(dir_entries(dir.path()), std::vector<std::string>{"model.h5"});
  EXPECT_TRUE(bit_equal(CheckpointReader(path).read("w"), at::full({3}, 1.0)));

  {
    CheckpointWriter writer(path, target_attributes());
    writer.write("w", at::full({3}, 2.0));
    writer.commit();
  }
  EXPECT_EQ(dir_entries(dir.path()), std::vector<std::string>{"model.h5"});
  EXPECT_TRUE(bit_equal(CheckpointReader(path).read("w"), at::full({3}, 2.0)));

  expect_checkpoint_error([&] { CheckpointWriter w(dir.str("no/such/dir/x.h5"), target_attributes()); },
                          {"does not exist"});
}

TEST(CheckpointTest, ReadBlockEqualsSlicingTheFullTensor) {
  TempDir dir;
  const auto path = dir.str("tp.h5");
  at::manual_seed(3);
  std::map<std::string, at::Tensor> tensors;
  tensors["small"] = at::randn({6, 10});                         // compact storage
  tensors["big"] = at::randn({3000, 700});                       // chunked in row blocks
  tensors["big_bf16"] = at::randn({2048, 1536}).to(at::kBFloat16);
  tensors["cube"] = at::randint(0, 1000, {5, 6, 7}, at::kLong);  // n-D, dims 0 and 1
  tensors["vector"] = at::randn({100});
  save_checkpoint(path, target_attributes(), tensors);
  CheckpointReader reader(path);
  struct Case {
    std::string name;
    int dim;
    int64_t begin, end;
  };
  const std::vector<Case> cases = {
      {"small", 0, 0, 3},       {"small", 0, 3, 6},      {"small", 1, 5, 10},   {"small", 1, 0, 0},
      {"big", 0, 1000, 2000},   {"big", 0, 0, 3000},     {"big", 1, 350, 700},  {"big", 0, 1497, 1503},
      {"big_bf16", 0, 1024, 2048}, {"big_bf16", 1, 0, 768}, {"cube", 0, 1, 4}, {"cube", 1, 2, 6},
      {"vector", 0, 50, 100},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name + " dim " + std::to_string(c.dim) + " [" + std::to_string(c.begin) + "," +
                 std::to_string(c.end) + ")");
    const auto block = reader.read_block(c.name, c.dim, c.begin, c.end);
    EXPECT_TRUE(bit_equal(block, tensors[c.name].narrow(c.dim, c.begin, c.end - c.begin).contiguous()));
  }
  expect_checkpoint_error([&] { reader.read_block("small", 0, 4, 7); }, {"[4, 7)", "size 6", "small"});
  expect_checkpoint_error([&] { reader.read_block("small", 2, 0, 1); }, {"dim must be 0 or 1"});
  expect_checkpoint_error([&] { reader.read_block("vector", 1, 0, 1); }, {"dim 1 of a 1-d tensor"});
  expect_checkpoint_error([&] { reader.read_block("absent", 0, 0, 1); }, {"'absent' not found"});
}

// Chunk dims of a dataset as stored (HDF5 C API).
std::vector<hsize_t> chunk_dims(const std::string& path, const std::string& name) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  const hid_t plist = H5Dget_create_plist(d);
  std::vector<hsize_t> dims(8, 0);
  const int rank = H5Pget_chunk(plist, 8, dims.data());
  dims.resize(static_cast<size_t>(std::max(rank, 0)));
  H5Pclose(plist);
  H5Dclose(d);
  H5Fclose(f);
  return dims;
}

TEST(CheckpointTest, ChunkRowsCapsTheFirstChunkDimension) {
  TempDir dir;
  const auto path = dir.str("rows.h5");
  at::manual_seed(4);
  const at::Tensor x = at::randn({40, 20, 50});  // 160 KB: one default chunk holds every row
  {
    CheckpointWriter w(path, target_attributes());
    w.set_compression(4);
    w.write("default", x);
    w.set_chunk_rows(1);
    w.write("one_row", x);
    w.commit();
  }
  EXPECT_EQ(chunk_dims(path, "default"), (std::vector<hsize_t>{40, 20, 50}));
  EXPECT_EQ(chunk_dims(path, "one_row"), (std::vector<hsize_t>{1, 20, 50}));
  CheckpointReader r(path);
  EXPECT_TRUE(bit_equal(r.read("one_row"), x));
  EXPECT_TRUE(bit_equal(r.read_block("one_row", 0, 7, 9), x.narrow(0, 7, 2).contiguous()));
}

TEST(CheckpointTest, MissingAndNonHdf5FilesAreErrors) {
  TempDir dir;
  const auto missing = dir.str("missing.h5");
  expect_checkpoint_error([&] { CheckpointReader r(missing); }, {"not found", missing});
  const auto text = dir.str("text.h5");
  std::ofstream(text) << "this is not hdf5\n";
  expect_checkpoint_error([&] { CheckpointReader r(text); }, {"not an HDF5 file", text});
  const auto empty = dir.str("empty.h5");
  std::ofstream(empty).close();
  expect_checkpoint_error([&] { CheckpointReader r(empty); }, {empty});
  expect_checkpoint_error([&] { CheckpointReader r(dir.str()); }, {"not a regular file"});
}

TEST(CheckpointTest, TruncatedAndCorruptedFilesAreErrors) {
  TempDir dir;
  const auto path = dir.str("good.h5");
  at::manual_seed(1);
  std::map<std::string, at::Tensor> tensors;
  for (int i = 0; i < 4; ++i) tensors["model.layers." + std::to_string(i) + ".weight"] = at::randn({256, 256});
  tensors["model.norm.weight"] = at::ones({256});
  save_checkpoint(path, target_attributes(), tensors);
  read_everything(path);
  const auto size = fs::file_size(path);
  std::string bytes(size, '\0');
  std::ifstream(path, std::ios::binary).read(bytes.data(), size);

  const auto truncated = dir.str("truncated.h5");
  std::ofstream(truncated, std::ios::binary).write(bytes.data(), size / 2);
  expect_checkpoint_error([&] { read_everything(truncated); }, {truncated});
  expect_checkpoint_error([&] { CheckpointReader r(truncated); }, {"truncated or corrupt", truncated});

  auto damage = [&](size_t offset) {
    std::string damaged = bytes;
    for (size_t i = offset; i < offset + 64 && i < damaged.size(); ++i) damaged[i] = static_cast<char>(damaged[i] ^ 0x5a);
    const auto corrupt = dir.str("corrupt.h5");
    std::ofstream(corrupt, std::ios::binary | std::ios::trunc).write(damaged.data(), damaged.size());
    return corrupt;
  };
  // Damage where something lives must be an error: in the middle of a tensor's bytes (the chunk
  // checksums), the superblock, and a link name (the checksummed metadata).
  const auto& middle_tensor = tensors.at("model.layers.2.weight");
  const std::string needle(static_cast<const char*>(middle_tensor.data_ptr()) + 4096, 64);
  const size_t data_offset = bytes.find(needle);
  ASSERT_NE(data_offset, std::string::npos);
  const size_t name_offset = bytes.find("model.layers.1.weight");
  ASSERT_NE(name_offset, std::string::npos);
  for (const size_t offset : {data_offset, size_t{0}, name_offset}) {
    SCOPED_TRACE(offset);
    const auto corrupt = damage(offset);
    expect_checkpoint_error([&] { read_everything(corrupt); }, {corrupt});
  }
  // Anywhere else (HDF5 leaves a little slack between objects) it is an error or harmless: the
  // reader never returns different numbers.
  for (size_t eighth = 1; eighth < 8; ++eighth) {
    SCOPED_TRACE(eighth);
    const auto corrupt = damage(size / 8 * eighth);
    try {
      CheckpointReader reader(corrupt);
      for (const auto& [name, tensor] : tensors) EXPECT_TRUE(bit_equal(reader.read(name), tensor)) << name;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Checkpoint);
      EXPECT_NE(e.message().find(corrupt), std::string::npos) << e.message();
    }
  }
}

// Rewrites one root attribute of an existing file with the raw HDF5 API (what another version or a
// hand-edited file would hold).
void set_raw_int_attribute(const std::string& path, const char* key, int64_t value, bool remove = false) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  ASSERT_GE(H5Adelete(file, key), 0);
  if (!remove) {
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attr = H5Acreate2(file, key, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT64, &value), 0);
    H5Aclose(attr);
    H5Sclose(space);
  }
  H5Fclose(file);
}

TEST(CheckpointTest, FormatVersionKindAndMissingTensorErrors) {
  TempDir dir;
  const auto path = dir.str("v7.h5");
  save_checkpoint(path, target_attributes(), {{"w", at::ones({2})}});
  set_raw_int_attribute(path, "format_version", 7);
  expect_checkpoint_error([&] { CheckpointReader r(path); }, {path, "format_version 7 is not supported (expected 1)"});
  set_raw_int_attribute(path, "format_version", 0, /*remove=*/true);
  expect_checkpoint_error([&] { CheckpointReader r(path); }, {path, "no format_version"});

  const auto draft = dir.str("draft.h5");
  auto attrs = target_attributes();
  attrs.kind = "draft";
  save_checkpoint(draft, attrs,
                  {{"model.layers.0.self_attn.q_proj.weight", at::ones({2, 2})},
                   {"model.layers.0.self_attn.k_proj.weight", at::ones({2, 2})},
                   {"lm_head.weight", at::ones({2, 2})}});
  expect_checkpoint_error([&] { CheckpointReader r(draft, "target"); },
                          {draft, "is a 'draft' checkpoint, expected 'target'"});
  EXPECT_NO_THROW((CheckpointReader{draft, "draft"}));
  EXPECT_NO_THROW(CheckpointReader{draft});

  CheckpointReader reader(draft);
  expect_checkpoint_error([&] { reader.read("model.layers.0.self_attn.v_proj.weight"); },
                          {draft, "'model.layers.0.self_attn.v_proj.weight' not found", "3 tensors",
                           "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"});
  expect_checkpoint_error([&] { reader.info("optimizer/x"); }, {"'optimizer/x' not found"});
}

TEST(CheckpointTest, ReadsPlainHdf5DatasetsWithoutDtypeAttribute) {
  // A file from another tool (h5py without our attributes): dtypes come from the HDF5 types.
  TempDir dir;
  const auto path = dir.str("foreign.h5");
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const int64_t version = 1;
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(file, "format_version", H5T_STD_I64BE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, H5T_NATIVE_INT64, &version);
  H5Aclose(attr);
  const hsize_t dims[2] = {2, 3};
  const hid_t space = H5Screate_simple(2, dims, nullptr);
  const double values[6] = {1, 2, 3, 4, 5, 6};
  const hid_t dset = H5Dcreate2(file, "x", H5T_IEEE_F64BE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  H5Dclose(dset);
  H5Sclose(space);
  H5Sclose(scalar);
  H5Fclose(file);

  CheckpointReader reader(path);
  EXPECT_EQ(reader.attributes().kind, "");
  ASSERT_EQ(reader.list().size(), 1u);
  EXPECT_EQ(reader.list()[0].dtype, "float64");
  EXPECT_TRUE(bit_equal(reader.read("x"), at::arange(1, 7, at::kDouble).reshape({2, 3})));
  expect_checkpoint_error([&] { CheckpointReader r(path, "target"); }, {"has no kind, expected 'target'"});
}

}  // namespace
}  // namespace atspeed
