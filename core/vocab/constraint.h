// Decoding constraints (SPEC §2.2): which tokens may follow a generated prefix of code tokens.
//
// A prefix of depth d holds the d codes generated so far (d in 0..levels). At d < levels the
// allowed tokens are codes of level d; at d == levels only EOS. A prefix that cannot be continued
// (a token that is not a code of its level, or a path that no item takes) is *dead*: its mask row
// is all-blocked and `alive` says false. Callers drop dead rows; nothing falls back to arbitrary
// tokens.
//   PrefixTrie  the strict constraint over all distinct code tuples: only real items (default, §9.1)
//   LevelMask   the reference's per-level constraint: any code used at that level (its timing setup)
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/vocab/item_catalog.h"

namespace atspeed {

class Constraint {
 public:
  explicit Constraint(const Vocabulary& vocab) : vocab_(vocab) {}
  virtual ~Constraint() = default;
  virtual std::string name() const = 0;
  const Vocabulary& vocab() const { return vocab_; }

  // The allowed next tokens after `prefix` (its size is the depth, <= levels), ascending; empty
  // when the prefix is dead. The span stays valid as long as the constraint lives.
  virtual std::span<const int64_t> allowed(std::span<const int64_t> prefix) const = 0;

  // Batched boolean mask. prefixes: int64 [n, depth] on any device (depth may be 0: shape [n, 0]).
  // Returns bool [n, V] on the prefixes' device, true = allowed. `alive`, when given, receives
  // bool [n] on the same device: false for dead rows (whose mask row is all false).
  at::Tensor allowed_mask(const at::Tensor& prefixes, at::Tensor* alive = nullptr) const;
  // Rows of different depths: prefixes [n, max_depth] (entries at and beyond depths[i] are
  // ignored), depths int64 [n].
  at::Tensor allowed_mask(const at::Tensor& prefixes, const at::Tensor& depths, at::Tensor* alive = nullptr) const;
  // Additive form of allowed_mask: 0 where allowed, -inf where blocked, in `dtype`.
  at::Tensor additive_mask(const at::Tensor& prefixes, at::Tensor* alive = nullptr,
                           c10::ScalarType dtype = c10::ScalarType::Float) const;

  // The CPU core of the above: fills mask (row-major [n, V], zeroed here) and alive [n] (may be
  // null). Row i's prefix is prefixes[i * stride .. + depth_i), depth_i = depths ? depths[i] : depth.
  void fill_mask(const int64_t* prefixes, int64_t n, int64_t stride, const int64_t* depths, int64_t depth,
                 bool* mask, bool* alive) const;

 protected:
  Vocabulary vocab_;
  const int64_t eos_[1] = {Vocabulary::kEos};
};

class PrefixTrie final : public Constraint {
 public:
  static constexpr int32_t kNoNode = -1;
  explicit PrefixTrie(const ItemCatalog& catalog);
  std::string name() const override { return "trie"; }
  std::span<const int64_t> allowed(std::span<const int64_t> prefix) const override;

  // Incremental walking, for search code that keeps a node per beam.
  int32_t root() const { return 0; }
  // The child reached by `token`, or kNoNode.
  int32_t child(int32_t node, int64_t token) const;
  // The node a prefix leads to, or kNoNode when dead.
  int32_t node_for(std::span<const int64_t> prefix) const;
  int depth(int32_t node) const { return depth_[static_cast<size_t>(node)]; }
  // Allowed next tokens at a node: its children's tokens, or {EOS} at a leaf.
  std::span<const int64_t> allowed_at(int32_t node) const;
  // The catalogue tuple id of a leaf (depth == levels), else -1.
  int64_t tuple_at(int32_t node) const { return leaf_tuple_[static_cast<size_t>(node)]; }
  int64_t num_nodes() const { return static_cast<int64_t>(depth_.size()); }

  // Fan-out of the nodes whose children are codes of `level` (0-based): number of such nodes and
  // the mean and max number of children. SPEC §1.3's "levels 2/3/4" are level = 1, 2, 3.
  struct Fanout {
    int64_t nodes = 0;
    double mean = 0;
    int64_t max = 0;
  };
  Fanout fanout(int level) const;

 private:
  std::vector<int8_t> depth_;
  std::vector<int64_t> child_begin_;   // [num_nodes + 1], CSR into child_token_/child_node_
  std::vector<int64_t> child_token_;   // ascending within a node
  std::vector<int32_t> child_node_;
  std::vector<int64_t> leaf_tuple_;
};

class LevelMask final : public Constraint {
 public:
  explicit LevelMask(const ItemCatalog& catalog);
  std::string name() const override { return "level"; }
  // A prefix is dead when one of its tokens is not a code used at its level.
  std::span<const int64_t> allowed(std::span<const int64_t> prefix) const override;

 private:
  std::vector<std::vector<int64_t>> allowed_;  // per level, ascending token ids
  std::vector<char> used_;                     // [V]: token used at its level
};

// "trie" or "level"; anything else is Error(Config).
std::unique_ptr<Constraint> make_constraint(const std::string& kind, const ItemCatalog& catalog);

}  // namespace atspeed
