#include "core/vocab/constraint.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/errors.h"

namespace atspeed {

void Constraint::fill_mask(const int64_t* prefixes, int64_t n, int64_t stride, const int64_t* depths, int64_t depth,
                           bool* mask, bool* alive) const {
  const int64_t V = vocab_.size();
  std::memset(mask, 0, static_cast<size_t>(n * V));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = depths ? depths[i] : depth;
    ATSPEED_CHECK(d >= 0 && d <= vocab_.levels() && d <= stride, "prefix depth ", d, " (levels ", vocab_.levels(),
                  ", width ", stride, ")");
    const auto tokens = allowed({prefixes + i * stride, static_cast<size_t>(d)});
    bool* row = mask + i * V;
    for (int64_t t : tokens) row[t] = true;
    if (alive) alive[i] = !tokens.empty();
  }
}

at::Tensor Constraint::allowed_mask(const at::Tensor& prefixes, at::Tensor* alive) const {
  ATSPEED_CHECK(prefixes.dim() == 2 && prefixes.scalar_type() == at::kLong, "prefixes must be int64 [n, depth], got ",
                prefixes.sizes());
  const auto cpu = prefixes.to(at::kCPU).contiguous();
  const int64_t n = cpu.size(0);
  auto mask = at::empty({n, vocab_.size()}, at::kBool);
  auto live = at::empty({n}, at::kBool);
  fill_mask(cpu.data_ptr<int64_t>(), n, cpu.size(1), nullptr, cpu.size(1), mask.data_ptr<bool>(), live.data_ptr<bool>());
  if (alive) *alive = live.to(prefixes.device());
  return mask.to(prefixes.device());
}

at::Tensor Constraint::allowed_mask(const at::Tensor& prefixes, const at::Tensor& depths, at::Tensor* alive) const {
  ATSPEED_CHECK(prefixes.dim() == 2 && prefixes.scalar_type() == at::kLong, "prefixes must be int64 [n, depth], got ",
                prefixes.sizes());
  ATSPEED_CHECK(depths.dim() == 1 && depths.scalar_type() == at::kLong && depths.size(0) == prefixes.size(0),
                "depths must be int64 [n]");
  const auto cpu = prefixes.to(at::kCPU).contiguous();
  const auto d = depths.to(at::kCPU).contiguous();
  const int64_t n = cpu.size(0);
  auto mask = at::empty({n, vocab_.size()}, at::kBool);
  auto live = at::empty({n}, at::kBool);
  fill_mask(cpu.data_ptr<int64_t>(), n, cpu.size(1), d.data_ptr<int64_t>(), 0, mask.data_ptr<bool>(),
            live.data_ptr<bool>());
  if (alive) *alive = live.to(prefixes.device());
  return mask.to(prefixes.device());
}

at::Tensor Constraint::additive_mask(const at::Tensor& prefixes, at::Tensor* alive, c10::ScalarType dtype) const {
  const auto mask = allowed_mask(prefixes, alive);
  auto out = at::zeros(mask.sizes(), mask.options().dtype(dtype));
  return out.masked_fill_(mask.logical_not(), -std::numeric_limits<double>::infinity());
}

// ---------------------------------------------------------------------------------------------
// PrefixTrie. Nodes are numbered breadth-first, so the children of a node are consecutive and
// each node's child list is one CSR slice; allowed tokens are those slices, precomputed.

PrefixTrie::PrefixTrie(const ItemCatalog& catalog) : Constraint(catalog.vocab()) {
  const int levels = catalog.levels();
  const int64_t n_tuples = catalog.num_tuples();
  // Each node covers a contiguous range of the (sorted) tuples.
  struct Range {
    int64_t lo, hi;
  };
  std::vector<Range> current = {{0, n_tuples}};
  depth_.push_back(0);
  leaf_tuple_.push_back(-1);
  child_begin_.push_back(0);
  for (int d = 0; d < levels; ++d) {
    std::vector<Range> next;
    for (const Range& r : current) {
      for (int64_t lo = r.lo; lo < r.hi;) {
        const int32_t code = catalog.tuple_codes(lo)[static_cast<size_t>(d)];
        int64_t hi = lo + 1;
        while (hi < r.hi && catalog.tuple_codes(hi)[static_cast<size_t>(d)] == code) ++hi;
        child_token_.push_back(vocab_.code_token(d, code));
        child_node_.push_back(static_cast<int32_t>(depth_.size()));
        depth_.push_back(static_cast<int8_t>(d + 1));
        leaf_tuple_.push_back(d + 1 == levels ? lo : -1);
        next.push_back({lo, hi});
        lo = hi;
      }
      // Children were made in code order; a text vocabulary numbers codes in string order, so sort
      // the slice by token id (child() binary-searches it, allowed() is documented ascending).
      const size_t begin = static_cast<size_t>(child_begin_.back()), end = child_token_.size();
      if (!std::is_sorted(child_token_.begin() + begin, child_token_.end())) {
        std::vector<std::pair<int64_t, int32_t>> pairs;
        for (size_t i = begin; i < end; ++i) pairs.emplace_back(child_token_[i], child_node_[i]);
        std::sort(pairs.begin(), pairs.end());
        for (size_t i = begin; i < end; ++i) std::tie(child_token_[i], child_node_[i]) = pairs[i - begin];
      }
      child_begin_.push_back(static_cast<int64_t>(child_token_.size()));
    }
    current = std::move(next);
  }
  // Leaves have no children.
  for (size_t i = 0; i < current.size(); ++i) child_begin_.push_back(static_cast<int64_t>(child_token_.size()));
  ATSPEED_CHECK(child_begin_.size() == depth_.size() + 1, "trie CSR size");
}

int32_t PrefixTrie::child(int32_t node, int64_t token) const {
  if (node < 0) return kNoNode;
  const auto b = child_token_.begin() + child_begin_[static_cast<size_t>(node)];
  const auto e = child_token_.begin() + child_begin_[static_cast<size_t>(node) + 1];
  const auto it = std::lower_bound(b, e, token);
  if (it == e || *it != token) return kNoNode;
  return child_node_[static_cast<size_t>(it - child_token_.begin())];
}

int32_t PrefixTrie::node_for(std::span<const int64_t> prefix) const {
  int32_t node = root();
  for (int64_t t : prefix) {
    node = child(node, t);
    if (node == kNoNode) return kNoNode;
  }
  return node;
}

std::span<const int64_t> PrefixTrie::allowed_at(int32_t node) const {
  if (node < 0) return {};
  if (depth(node) == vocab_.levels()) return {eos_, 1};
  const int64_t b = child_begin_[static_cast<size_t>(node)];
  const int64_t e = child_begin_[static_cast<size_t>(node) + 1];
  return {child_token_.data() + b, static_cast<size_t>(e - b)};
}

std::span<const int64_t> PrefixTrie::allowed(std::span<const int64_t> prefix) const {
  ATSPEED_CHECK(static_cast<int>(prefix.size()) <= vocab_.levels(), "prefix longer than ", vocab_.levels());
  return allowed_at(node_for(prefix));
}

PrefixTrie::Fanout PrefixTrie::fanout(int level) const {
  Fanout f;
  int64_t total = 0;
  for (int64_t node = 0; node < num_nodes(); ++node) {
    if (depth_[static_cast<size_t>(node)] != level) continue;
    const int64_t k = child_begin_[static_cast<size_t>(node) + 1] - child_begin_[static_cast<size_t>(node)];
    ++f.nodes;
    total += k;
    f.max = std::max(f.max, k);
  }
  f.mean = f.nodes ? static_cast<double>(total) / static_cast<double>(f.nodes) : 0.0;
  return f;
}

// ---------------------------------------------------------------------------------------------

LevelMask::LevelMask(const ItemCatalog& catalog) : Constraint(catalog.vocab()) {
  used_.assign(static_cast<size_t>(vocab_.size()), 0);
  for (int64_t i = 0; i < catalog.num_items(); ++i) {
    const auto c = catalog.codes(i);
    for (int l = 0; l < catalog.levels(); ++l) used_[static_cast<size_t>(vocab_.code_token(l, c[static_cast<size_t>(l)]))] = 1;
  }
  allowed_.resize(static_cast<size_t>(vocab_.levels()));
  for (int64_t t = 0; t < vocab_.size(); ++t)
    if (used_[static_cast<size_t>(t)]) allowed_[static_cast<size_t>(vocab_.level_of(t))].push_back(t);
}

std::span<const int64_t> LevelMask::allowed(std::span<const int64_t> prefix) const {
  const int d = static_cast<int>(prefix.size());
  ATSPEED_CHECK(d <= vocab_.levels(), "prefix longer than ", vocab_.levels());
  for (int l = 0; l < d; ++l) {
    const int64_t t = prefix[static_cast<size_t>(l)];
    if (vocab_.level_of(t) != l || !used_[static_cast<size_t>(t)]) return {};
  }
  if (d == vocab_.levels()) return {eos_, 1};
  const auto& a = allowed_[static_cast<size_t>(d)];
  return {a.data(), a.size()};
}

std::unique_ptr<Constraint> make_constraint(const std::string& kind, const ItemCatalog& catalog) {
  if (kind == "trie") return std::make_unique<PrefixTrie>(catalog);
  if (kind == "level") return std::make_unique<LevelMask>(catalog);
  ATSPEED_THROW(Config, "unknown constraint '", kind, "' (trie or level)");
}

}  // namespace atspeed
