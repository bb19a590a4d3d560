// safetensors reader and writer: round trips for every dtype, and every malformed-file case the
// reader must refuse with an Error(Checkpoint) naming the file (and tensor).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/io/safetensors.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

// A file made of an explicit header text and data bytes (the header length prefix is computed).
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               std::optional<uint64_t> length_override = std::nullopt) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = length_override.value_or(header.size());
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

// Expects Error(Checkpoint) whose message contains every part.
void expect_refused(const std::string& path, const std::vector<std::string>& parts) {
  try {
    SafetensorsReader reader(path);
    FAIL() << "accepted a malformed file; expected " << parts.front();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Checkpoint) << e.message();
    EXPECT_NE(e.message().find(path), std::string::npos) << e.message();
    for (const auto& p : parts) EXPECT_NE(e.message().find(p), std::string::npos) << "'" << p << "' not in: " << e.message();
  }
}

TEST(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  test::TempDir dir;
  torch::manual_seed(3);
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", torch::randn({3, 5})},
      {"f64", torch::randn({2, 2}, torch::kDouble)},
      {"f16", torch::randn({7}).to(torch::kHalf)},
      {"bf16", torch::randn({3, 1, 2}).to(torch::kBFloat16)},
      {"i64", torch::arange(-5, 6, torch::kLong)},
      {"i32", torch::arange(0, 9, torch::kInt).view({3, 3})},
      {"i16", torch::arange(-3, 3, torch::kShort)},
      {"i8", torch::arange(-128, 127, torch::kChar)},
      {"u8", torch::arange(0, 255, torch::kByte)},
      {"bool", torch::rand({4, 4}) > 0.5},
      {"scalar", torch::scalar_tensor(2.5)},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input is written contiguously
  };
  const std::string path = dir.str("all.safetensors");
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "hello"}});
  SafetensorsReader reader(path);
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.metadata().at("note"), "hello");
  ASSERT_EQ(reader.list().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    // list() is in data order, which is the written order.
    EXPECT_EQ(reader.list()[i].name, tensors[i].first);
    const at::Tensor got = reader.read(tensors[i].first);
    EXPECT_EQ(got.scalar_type(), tensors[i].second.scalar_type()) << tensors[i].first;
    EXPECT_TRUE(torch::equal(got, tensors[i].second)) << tensors[i].first;
  }
  EXPECT_EQ(reader.entry("bf16").dtype, "BF16");
  EXPECT_FALSE(reader.contains("nope"));
  EXPECT_THROW(reader.read("nope"), Error);
  // The header is padded to 8 bytes, so the data region starts aligned.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  // load_safetensors gives the same tensors by name.
  auto all = load_safetensors(path);
  EXPECT_TRUE(torch::equal(all.at("i64"), tensors[4].second));
}

TEST(SafetensorsTest, ReadsFilesWrittenByTheReferenceImplementation) {
  // tests/data/parity/model.safetensors was written by the Python safetensors package.
  SafetensorsReader reader(std::string(ATSPEED_SOURCE_DIR) + "/tests/data/parity/model.safetensors");
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.entry("model.embed_tokens.weight").shape, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(reader.read("model.layers.1.self_attn.k_proj.weight").sizes(), (at::IntArrayRef{16, 32}));
}

TEST(SafetensorsTest, WriterRefusesBadInput) {
  test::TempDir dir;
  const std::string path = dir.str("w.safetensors");
  EXPECT_THROW(save_safetensors(path, {{"a", torch::zeros({2})}, {"a", torch::zeros({2})}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", torch::zeros({2})}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"c", torch::zeros({2}, torch::kComplexFloat)}}), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsTest, RefusesMalformedFiles) {
  test::TempDir dir;
  const std::string good = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\0');
  auto p = [&](const std::string& name) { return dir.str(name + ".safetensors"); };

  write_raw(p("ok"), good, data);
  EXPECT_NO_THROW(SafetensorsReader(p("ok")));

  {  // shorter than the length prefix
    std::ofstream(p("tiny"), std::ios::binary) << "abc";
    expect_refused(p("tiny"), {"truncated"});
  }
  write_raw(p("trunc_header"), good, data, good.size() + 100);
  expect_refused(p("trunc_header"), {"truncated", "header length"});
  write_raw(p("huge_header"), good, data, uint64_t{1} << 40);
  expect_refused(p("huge_header"), {"header length"});
  write_raw(p("trunc_data"), good, data.substr(0, 5));
  expect_refused(p("trunc_data"), {"tensor 'a'", "beyond the data region"});
  write_raw(p("bad_json"), R"({"a":{"dtype":"F32",)", data);
  expect_refused(p("bad_json"), {"not valid JSON"});
  write_raw(p("not_object"), "[1, 2]", data);
  expect_refused(p("not_object"), {"not a JSON object"});
  write_raw(p("out_of_range"), R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data);
  expect_refused(p("out_of_range"), {"tensor 'a'", "beyond the data region"});
  write_raw(p("backwards"), R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data);
  expect_refused(p("backwards"), {"tensor 'a'", "backwards"});
  write_raw(p("size_mismatch"), R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data);
  expect_refused(p("size_mismatch"), {"tensor 'a'", "needs 12"});
  write_raw(p("unknown_dtype"), R"({"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", data);
  expect_refused(p("unknown_dtype"), {"tensor 'a'", "unsupported dtype 'F8_E4M3'"});
  write_raw(p("overlap"),
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
            data);
  expect_refused(p("overlap"), {"overlaps"});
  write_raw(p("negative_shape"), R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data);
  expect_refused(p("negative_shape"), {"tensor 'a'", "non-negative"});
  write_raw(p("overflow"),
            R"({"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}})", data);
  expect_refused(p("overflow"), {"tensor 'a'", "overflows"});
  write_raw(p("missing_offsets"), R"({"a":{"dtype":"F32","shape":[2]}})", data);
  expect_refused(p("missing_offsets"), {"tensor 'a'", "data_offsets"});
  write_raw(p("bad_metadata"), R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data);
  expect_refused(p("bad_metadata"), {"__metadata__"});
  expect_refused(p("does_not_exist"), {"cannot open"});
}

}  // namespace
}  // namespace atspeed
