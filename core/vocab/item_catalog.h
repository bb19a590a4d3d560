// ItemCatalog: item ids <-> semantic-ID code tuples. Item ids are 0-based and dense. The shipped
// LC-Rec indexes have collisions (Beauty: 12 surplus items, Games: 43), so one code tuple can name
// several items: lookups by codes return a list. Distinct tuples get ids 0..num_tuples()-1 in
// ascending lexicographic code order, which is also the tie-break order of SPEC §9.2.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/vocab/vocabulary.h"

namespace atspeed {

class ItemCatalog {
 public:
  ItemCatalog() = default;
  // `codes` is row-major [num_items, vocab.levels()]. Throws Error(Data) on a code outside
  // [0, codebook_size) or an empty catalogue.
  ItemCatalog(Vocabulary vocab, std::vector<int32_t> codes);

  const Vocabulary& vocab() const { return vocab_; }
  int levels() const { return vocab_.levels(); }
  int64_t num_items() const { return num_items_; }
  bool has_item(int64_t item) const { return item >= 0 && item < num_items_; }

  // The item's codes (levels() entries). Throws Error(Internal) for an unknown item.
  std::span<const int32_t> codes(int64_t item) const;
  // The item's code tokens (vocabulary ids).
  std::vector<int64_t> item_tokens(int64_t item) const;
  void append_item_tokens(int64_t item, std::vector<int64_t>& out) const;
  const std::vector<int32_t>& all_codes() const { return codes_; }

  // Distinct code tuples.
  int64_t num_tuples() const { return static_cast<int64_t>(tuple_items_.size()); }
  int64_t tuple_of_item(int64_t item) const { return item_tuple_[static_cast<size_t>(item)]; }
  std::span<const int32_t> tuple_codes(int64_t tuple) const;
  const std::vector<int64_t>& tuple_items(int64_t tuple) const { return tuple_items_[static_cast<size_t>(tuple)]; }
  // Tuple id of a code tuple (levels() codes) or -1 when no item has it (or a code is out of range).
  int64_t find_tuple(std::span<const int32_t> codes) const;
  // Same from code tokens (levels() vocabulary ids, e.g. a generated beam); -1 when not an item.
  int64_t find_tuple_by_tokens(std::span<const int64_t> tokens) const;
  // Items whose codes equal these code tokens (empty when none; several on a collision).
  std::vector<int64_t> items_for_tokens(std::span<const int64_t> tokens) const;

  // Tuples shared by more than one item, as their item lists (ascending tuple order).
  std::vector<std::vector<int64_t>> collision_groups() const;
  int64_t surplus_items() const { return num_items_ - num_tuples(); }
  // Number of distinct codes used at each level.
  std::vector<int64_t> codes_used_per_level() const;

  // Stable identity of the index for checkpoints: FNV-1a 64 over (levels, codebook size, item
  // count, every item's codes in id order as little-endian int32), e.g.
  // "fnv1a64:89ab...:items=12035:levels=4:codebook=256".
  std::string fingerprint() const;

 private:
  int64_t pack(std::span<const int32_t> codes) const;

  Vocabulary vocab_;
  int64_t num_items_ = 0;
  std::vector<int32_t> codes_;                    // [num_items, levels]
  std::vector<int64_t> item_tuple_;               // item -> tuple id
  std::vector<int32_t> tuple_codes_;              // [num_tuples, levels], ascending
  std::vector<std::vector<int64_t>> tuple_items_; // tuple -> items (ascending ids)
  std::unordered_map<int64_t, int64_t> tuple_by_key_;
};

}  // namespace atspeed
