// LC-Rec index and split-file readers: formats, 1-based -> 0-based, and errors naming file:line.
#include <gtest/gtest.h>

#include <fstream>

#include "core/errors.h"
#include "data/dataset.h"
#include "data/lcrec.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Expects Error(Data) whose message contains `needle`.
template <typename F>
void expect_data_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL() << "no error; expected one containing: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data) << e.message();
    EXPECT_NE(e.message().find(needle), std::string::npos) << "message: " << e.message() << "\nexpected: " << needle;
  }
}

const char* kIndex = R"({"0": ["<a_1>", "<b_2>", "<c_3>", "<d_4>"], "2": ["<a_1>", "<b_2>", "<c_3>", "<d_4>"],
                         "1": ["<a_255>", "<b_0>", "<c_0>", "<d_9>"]})";

TEST(DataReaderTest, ReadsIndexAndRoundTrips) {
  test::TempDir dir;
  write(dir.str("x.LCRec-1e-3lr.json"), kIndex);
  const auto c = read_lcrec_index(dir.str("x.LCRec-1e-3lr.json"));
  ASSERT_EQ(c.num_items(), 3);
  EXPECT_EQ(std::vector<int32_t>(c.codes(1).begin(), c.codes(1).end()), (std::vector<int32_t>{255, 0, 0, 9}));
  EXPECT_EQ(c.surplus_items(), 1);
  write_lcrec_index(dir.str("y.json"), c);
  const auto d = read_lcrec_index(dir.str("y.json"));
  EXPECT_EQ(d.fingerprint(), c.fingerprint());
  EXPECT_EQ(read_text_file(dir.str("y.json")).substr(0, 40), R"({"0": ["<a_1>", "<b_2>", "<c_3>", "<d_4>)");
}

TEST(DataReaderTest, IndexErrors) {
  test::TempDir dir;
  const std::string p = dir.str("i.json");
  auto check = [&](const std::string& text, const std::string& needle) {
    write(p, text);
    expect_data_error([&] { read_lcrec_index(p); }, needle);
  };
  check(R"({"0": ["<a_1>", "<c_2>", "<c_3>", "<d_4>"]})", "i.json: item 0: token \"<c_2>\" at level 2 has the wrong prefix");
  check(R"({"0": ["<a_1>", "<b_256>", "<c_3>", "<d_4>"]})", "i.json: item 0: code 256 of token \"<b_256>\" is outside the codebook [0, 256)");
  check(R"({"0": ["<a_1>", "<b_2>", "<c_3>"]})", "item 0: expected a list of 4 code tokens");
  check(R"({"0": ["<a_1>", "<b_2>", "<c_3>", "<d_4>"], "2": ["<a_1>", "<b_2>", "<c_3>", "<d_5>"]})",
        "i.json: item 2 is out of range");
  check(R"({"x": ["<a_1>", "<b_2>", "<c_3>", "<d_4>"]})", "key \"x\" is not an item id");
  check(R"({"0": ["<a_1>", "<b_x>", "<c_3>", "<d_4>"]})", "has no valid code number");
  check(R"({"0": ["a_1", "<b_2>", "<c_3>", "<d_4>"]})", "is not of the form <a_N>");
  check(R"({"0": [)", "not valid JSON");
  check(R"([1, 2])", "expected a JSON object");
  expect_data_error([&] { read_lcrec_index(dir.str("missing.json")); }, "missing.json: cannot open");
}

TEST(DataReaderTest, ReadsSplitFilesZeroBased) {
  test::TempDir dir;
  write(dir.str("s.txt"), "1 3 1 2\n2\n3 1\n");
  const auto u = read_split_file(dir.str("s.txt"), 3);
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[0], (std::vector<int64_t>{2, 0, 1}));
  EXPECT_TRUE(u[1].empty());
  EXPECT_EQ(u[2], (std::vector<int64_t>{0}));
  write_split_file(dir.str("t.txt"), u);
  EXPECT_EQ(read_text_file(dir.str("t.txt")), "1 3 1 2\n2\n3 1\n");
  write(dir.str("nofinal.txt"), "1 3\n2 1");
  EXPECT_EQ(read_split_file(dir.str("nofinal.txt"), 3).size(), 2u);
}

TEST(DataReaderTest, SplitFileErrorsNameFileAndLine) {
  test::TempDir dir;
  const std::string p = dir.str("sequential_train.txt");
  auto check = [&](const std::string& text, const std::string& needle) {
    write(p, text);
    expect_data_error([&] { read_split_file(p, 12035); }, needle);
  };
  std::string many;
  for (int u = 1; u <= 16; ++u) many += std::to_string(u) + " 5\n";
  check(many + "17 4 99999\n", "sequential_train.txt:17: item 99999 is not in the index (12035 items)");
  check("1 2\n3 4\n", "sequential_train.txt:2: user id 3 found where 2 was expected");
  check("1 2  3\n", "sequential_train.txt:1: malformed line");
  check("1 2 3 \n", "sequential_train.txt:1: malformed line");
  check("1 2\tx\n", "sequential_train.txt:1: malformed line");
  check("1 2\n\n", "sequential_train.txt:2: empty line");
  check("1 0\n", "sequential_train.txt:1: item id 0 (ids are 1-based)");
  check("1 -2\n", "sequential_train.txt:1: malformed line");
}

TEST(DataReaderTest, LoadsADatasetDirectory) {
  test::TempDir dir;
  write(dir.str("toy.LCRec-1e-3lr.json"), kIndex);
  write(dir.str("sequential_train.txt"), "1 1 2\n2 3\n");
  write(dir.str("sequential_valid.txt"), "1\n2 1\n");
  write(dir.str("sequential_test.txt"), "1 3\n2\n");
  const auto ds = load_dataset(dir.str());
  EXPECT_EQ(ds.num_users(), 2);
  EXPECT_EQ(ds.num_items(), 3);
  EXPECT_EQ(ds.train[0], (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(ds.test[0], (std::vector<int64_t>{2}));
  write(dir.str("sequential_test.txt"), "1 3\n");
  expect_data_error([&] { load_dataset(dir.str()); }, "disagree on the number of users");
  write(dir.str("other.LCRec-x.json"), kIndex);
  expect_data_error([&] { load_dataset(dir.str()); }, "several *.LCRec*.json");
  expect_data_error([&] { load_dataset(dir.str("nope")); }, "does not exist");
}

}  // namespace
}  // namespace atspeed
