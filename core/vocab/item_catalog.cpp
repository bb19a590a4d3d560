#include "core/vocab/item_catalog.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <set>

#include "core/errors.h"
#include "core/fnv1a.h"

namespace atspeed {

ItemCatalog::ItemCatalog(Vocabulary vocab, std::vector<int32_t> item_codes)
    : vocab_(vocab), codes_(std::move(item_codes)) {
  const int64_t levels = vocab_.levels();
  ATSPEED_ENSURE(Data, !codes_.empty(), "item catalogue: no items");
  ATSPEED_ENSURE(Data, static_cast<int64_t>(codes_.size()) % levels == 0, "item catalogue: ", codes_.size(),
                 " codes is not a multiple of ", levels, " levels");
  num_items_ = static_cast<int64_t>(codes_.size()) / levels;
  for (int64_t i = 0; i < num_items_; ++i)
    for (int64_t l = 0; l < levels; ++l) {
      const int32_t c = codes_[static_cast<size_t>(i * levels + l)];
      ATSPEED_ENSURE(Data, c >= 0 && c < vocab_.codebook_size(), "item catalogue: item ", i, " level ", l, " code ", c,
                     " is outside [0, ", vocab_.codebook_size(), ")");
      ATSPEED_ENSURE(Data, vocab_.has_code_token(static_cast<int>(l), c), "item catalogue: item ", i, " uses ",
                     Vocabulary::code_string(static_cast<int>(l), c), ", which ", vocab_.code_source(), " does not have",
                     " (the tokenizer must be the one saved after add_tokens of every code of this index)");
    }

  // Sort items by (codes, id) so tuples get ascending ids and each tuple's items stay ascending.
  std::vector<int64_t> order(static_cast<size_t>(num_items_));
  std::iota(order.begin(), order.end(), 0);
  auto row = [&](int64_t i) { return codes_.begin() + i * levels; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::lexicographical_compare(row(a), row(a) + levels, row(b), row(b) + levels);
  });
  item_tuple_.assign(static_cast<size_t>(num_items_), -1);
  for (size_t k = 0; k < order.size(); ++k) {
    const int64_t item = order[k];
    if (k == 0 || !std::equal(row(item), row(item) + levels, row(order[k - 1]))) {
      tuple_codes_.insert(tuple_codes_.end(), row(item), row(item) + levels);
      tuple_items_.emplace_back();
      tuple_by_key_.emplace(pack(codes(item)), num_tuples() - 1);
    }
    tuple_items_.back().push_back(item);
    item_tuple_[static_cast<size_t>(item)] = num_tuples() - 1;
  }
}

std::span<const int32_t> ItemCatalog::codes(int64_t item) const {
  ATSPEED_CHECK(has_item(item), "item ", item, " of ", num_items_);
  return {codes_.data() + item * levels(), static_cast<size_t>(levels())};
}

std::vector<int64_t> ItemCatalog::item_tokens(int64_t item) const {
  std::vector<int64_t> out;
  append_item_tokens(item, out);
  return out;
}

void ItemCatalog::append_item_tokens(int64_t item, std::vector<int64_t>& out) const {
  const auto c = codes(item);
  for (int l = 0; l < levels(); ++l) out.push_back(vocab_.code_token(l, c[static_cast<size_t>(l)]));
}

std::span<const int32_t> ItemCatalog::tuple_codes(int64_t tuple) const {
  ATSPEED_CHECK(tuple >= 0 && tuple < num_tuples(), "tuple ", tuple);
  return {tuple_codes_.data() + tuple * levels(), static_cast<size_t>(levels())};
}

int64_t ItemCatalog::pack(std::span<const int32_t> codes) const {
  int64_t key = 0;
  for (int32_t c : codes) key = key * vocab_.codebook_size() + c;
  return key;
}

int64_t ItemCatalog::find_tuple(std::span<const int32_t> codes) const {
  if (static_cast<int>(codes.size()) != levels()) return -1;
  for (int32_t c : codes)
    if (c < 0 || c >= vocab_.codebook_size()) return -1;
  const auto it = tuple_by_key_.find(pack(codes));
  return it == tuple_by_key_.end() ? -1 : it->second;
}

int64_t ItemCatalog::find_tuple_by_tokens(std::span<const int64_t> tokens) const {
  if (static_cast<int>(tokens.size()) != levels()) return -1;
  int32_t codes[Vocabulary::kMaxLevels];
  for (int l = 0; l < levels(); ++l) {
    const int64_t t = tokens[static_cast<size_t>(l)];
    if (vocab_.level_of(t) != l) return -1;
    codes[l] = static_cast<int32_t>(vocab_.code_of(t));
  }
  return find_tuple({codes, static_cast<size_t>(levels())});
}

std::vector<int64_t> ItemCatalog::items_for_tokens(std::span<const int64_t> tokens) const {
  const int64_t t = find_tuple_by_tokens(tokens);
  return t < 0 ? std::vector<int64_t>{} : tuple_items_[static_cast<size_t>(t)];
}

std::vector<std::vector<int64_t>> ItemCatalog::collision_groups() const {
  std::vector<std::vector<int64_t>> out;
  for (const auto& items : tuple_items_)
    if (items.size() > 1) out.push_back(items);
  return out;
}

std::vector<int64_t> ItemCatalog::codes_used_per_level() const {
  std::vector<int64_t> out;
  for (int l = 0; l < levels(); ++l) {
    std::vector<char> used(static_cast<size_t>(vocab_.codebook_size()), 0);
    for (int64_t i = 0; i < num_items_; ++i) used[static_cast<size_t>(codes_[static_cast<size_t>(i * levels() + l)])] = 1;
    out.push_back(std::count(used.begin(), used.end(), 1));
  }
  return out;
}


std::string ItemCatalog::fingerprint() const {
  Fnv1a64 f;
  f.u64(static_cast<uint64_t>(levels()));
  f.u64(static_cast<uint64_t>(vocab_.codebook_size()));
  f.u64(static_cast<uint64_t>(num_items_));
  for (int32_t c : codes_) f.i32(c);
  return "fnv1a64:" + f.hex() + ":items=" + std::to_string(num_items_) + ":levels=" + std::to_string(levels()) +
         ":codebook=" + std::to_string(vocab_.codebook_size());
}

}  // namespace atspeed
