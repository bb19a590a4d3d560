#include "data/preprocess.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <unordered_map>

#include "core/errors.h"
#include "data/dataset.h"
#include "data/sampler.h"

namespace atspeed {

namespace {

// Reads a plain or gzip file line by line (gzread passes plain files through unchanged).
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path) {
    ATSPEED_ENSURE(Data, std::filesystem::exists(path), path, ": no such file");
    file_ = gzopen(path.c_str(), "rb");
    ATSPEED_ENSURE(Data, file_ != nullptr, path, ": cannot open");
    gzbuffer(file_, 1 << 17);
  }
  ~LineReader() {
    if (file_) gzclose(file_);
  }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool next(std::string& line) {
    line.clear();
    while (true) {
      if (pos_ < buf_.size()) {
        const size_t nl = buf_.find('\n', pos_);
        if (nl != std::string::npos) {
          line.append(buf_, pos_, nl - pos_);
          pos_ = nl + 1;
          return true;
        }
        line.append(buf_, pos_, std::string::npos);
        pos_ = buf_.size();
      }
      if (eof_) return !line.empty();
      buf_.resize(1 << 17);
      const int n = gzread(file_, buf_.data(), static_cast<unsigned>(buf_.size()));
      if (n < 0) {
        int err = 0;
        const char* msg = gzerror(file_, &err);
        ATSPEED_THROW(Data, path_, ": read error: ", msg ? msg : "unknown");
      }
      buf_.resize(static_cast<size_t>(n));
      pos_ = 0;
      if (n == 0) eof_ = true;
    }
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
};

}  // namespace

std::vector<RawInteraction> read_amazon_reviews(const std::string& path, int min_rating, ReadReport* report) {
  LineReader reader(path);
  std::vector<RawInteraction> out;
  ReadReport r;
  std::string line;
  int64_t line_no = 0;
  while (reader.next(line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines carry nothing
    ++r.lines;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      ATSPEED_THROW(Data, path, ":", line_no, ": not a JSON object: ", e.what());
    }
    ATSPEED_ENSURE(Data, j.is_object(), path, ":", line_no, ": not a JSON object");
    auto field = [&](const char* name) -> const nlohmann::json& {
      const auto it = j.find(name);
      ATSPEED_ENSURE(Data, it != j.end(), path, ":", line_no, ": missing field \"", name, "\"");
      return *it;
    };
    const auto& user = field("reviewerID");
    const auto& item = field("asin");
    const auto& overall = field("overall");
    const auto& time = field("unixReviewTime");
    ATSPEED_ENSURE(Data, user.is_string() && !user.get_ref<const std::string&>().empty(), path, ":", line_no,
                   ": \"reviewerID\" must be a non-empty string");
    ATSPEED_ENSURE(Data, item.is_string() && !item.get_ref<const std::string&>().empty(), path, ":", line_no,
                   ": \"asin\" must be a non-empty string");
    ATSPEED_ENSURE(Data, overall.is_number(), path, ":", line_no, ": \"overall\" must be a number, got ", overall.dump());
    ATSPEED_ENSURE(Data, time.is_number_integer(), path, ":", line_no, ": \"unixReviewTime\" must be an integer, got ",
                   time.dump());
    // Python's int() truncates toward zero: 3.9 -> 3.
    const auto rating = static_cast<int64_t>(std::trunc(overall.get<double>()));
    if (rating < min_rating) {
      ++r.low_rating;
      continue;
    }
    ++r.kept;
    out.push_back({user.get<std::string>(), item.get<std::string>(), time.get<int64_t>()});
  }
  if (report) *report = r;
  return out;
}

SplitResult split_interactions(const std::vector<RawInteraction>& interactions, const PreprocessOptions& options) {
  SplitResult res;
  // Step 3: users in order of first appearance; per user, items in first-insertion order with
  // the last time seen.
  struct UserData {
    std::string id;
    std::vector<std::pair<int64_t, int64_t>> items;  // (item index, time)
    std::unordered_map<int64_t, size_t> pos;
  };
  std::vector<UserData> users;
  std::unordered_map<std::string, size_t> user_index;
  std::vector<std::string> item_names;
  std::unordered_map<std::string, int64_t> item_index;
  for (const auto& x : interactions) {
    auto [uit, new_user] = user_index.try_emplace(x.user, users.size());
    if (new_user) users.push_back({x.user, {}, {}});
    auto [iit, new_item] = item_index.try_emplace(x.item, static_cast<int64_t>(item_names.size()));
    if (new_item) item_names.push_back(x.item);
    UserData& u = users[uit->second];
    auto [pit, new_pair] = u.pos.try_emplace(iit->second, u.items.size());
    if (new_pair)
      u.items.emplace_back(iit->second, x.time);
    else
      u.items[pit->second].second = x.time;
  }
  // Step 4: stable chronological sort.
  std::vector<int64_t> times;
  for (auto& u : users) {
    std::stable_sort(u.items.begin(), u.items.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    for (const auto& p : u.items) times.push_back(p.second);
  }
  const auto n = static_cast<int64_t>(times.size());
  res.interactions = n;
  res.users_before_drop = static_cast<int64_t>(users.size());
  // Step 6.
  const auto k = static_cast<int64_t>(std::floor(options.test_fraction * static_cast<double>(n)));
  ATSPEED_ENSURE(Data, k >= 1 && 2 * k <= n, "preprocess: ", n, " interactions are too few for a test fraction of ",
                 options.test_fraction, " (the split needs floor(fraction * n) >= 1)");
  std::sort(times.begin(), times.end());
  res.t1 = times[static_cast<size_t>(n - k)];
  res.t2 = times[static_cast<size_t>(n - 2 * k)];
  // Step 7 needs each user's split first.
  struct Kept {
    size_t user;
    std::vector<int64_t> split[3];
  };
  std::vector<Kept> kept;
  for (size_t ui = 0; ui < users.size(); ++ui) {
    Kept kp{ui, {}};
    for (const auto& [item, t] : users[ui].items) kp.split[t < res.t2 ? 0 : (t < res.t1 ? 1 : 2)].push_back(item);
    if (static_cast<int64_t>(kp.split[0].size()) < options.min_train) {
      ++res.dropped_users;
      continue;
    }
    kept.push_back(std::move(kp));
  }
  // Step 8: item ids over the remaining users.
  std::vector<char> used(item_names.size(), 0);
  for (const auto& kp : kept)
    for (const auto& s : kp.split)
      for (int64_t item : s) used[static_cast<size_t>(item)] = 1;
  std::vector<std::string> names;
  for (size_t i = 0; i < item_names.size(); ++i)
    if (used[i]) names.push_back(item_names[i]);
  std::sort(names.begin(), names.end());
  std::mt19937_64 rng(options.item_seed);
  seeded_shuffle(names, rng);
  std::unordered_map<std::string, int64_t> new_id;
  for (size_t i = 0; i < names.size(); ++i) new_id.emplace(names[i], static_cast<int64_t>(i));
  std::vector<int64_t> remap(item_names.size(), -1);
  for (size_t i = 0; i < item_names.size(); ++i)
    if (used[i]) remap[i] = new_id.at(item_names[i]);
  res.items = std::move(names);
  UserSequences* out[3] = {&res.train, &res.valid, &res.test};
  for (const auto& kp : kept) {
    res.users.push_back(users[kp.user].id);
    for (int s = 0; s < 3; ++s) {
      std::vector<int64_t> seq;
      for (int64_t item : kp.split[s]) seq.push_back(remap[static_cast<size_t>(item)]);
      out[s]->push_back(std::move(seq));
    }
  }
  return res;
}

void write_split_result(const std::string& dir, const SplitResult& r) {
  write_split_file(split_path(dir, "train"), r.train);
  write_split_file(split_path(dir, "valid"), r.valid);
  write_split_file(split_path(dir, "test"), r.test);
  std::string users, items;
  for (const auto& u : r.users) users += u + "\n";
  for (const auto& i : r.items) items += i + "\n";
  write_text_file_atomic((std::filesystem::path(dir) / "users.txt").string(), users);
  write_text_file_atomic((std::filesystem::path(dir) / "items.txt").string(), items);
}

}  // namespace atspeed
