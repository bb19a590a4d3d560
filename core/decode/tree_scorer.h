// The narrow interface through which search code sees a model (DESIGN §3 "Decoding"): a batch of
// B requests, each owning a prompt and a growing tree of nodes in its own KV region (SPEC §9.9).
// Beam search, and speculative beam search later, are written against TreeScorer only, so they are
// tested with fake scorers that return hand-made log-prob tables.
//
// Slots. Every request has the same number of slots, length(). After prefill, request b's prompt
// occupies slots [0, prompt_length(b)); slots [prompt_length(b), max prompt length) are padding
// (prompts are right-padded). Each extend() appends n slots to every request. A slot is named by
// its index within its request; "the prompt's last slot" is prompt_length(b) - 1.
//
// Attention. A prompt slot sees the prompt causally. A node sees its request's prompt, its
// ancestors and itself, and has position = parent's position + 1 (SPEC §2.3, §3.3). Padding slots
// and padding nodes (parent -1) see only themselves; their outputs are garbage and never read.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/model/llama.h"

namespace atspeed::decode {

// Cumulative forward accounting of a scorer (decode stats split time into target forwards, draft
// forwards and the rest with it).
struct ScorerCounters {
  int64_t forwards = 0;        // prefill and extend calls that ran the model
  double forward_seconds = 0;  // time inside them: the model forward and the log_softmax (CUDA: event-timed)
};

class TreeScorer {
 public:
  virtual ~TreeScorer() = default;

  virtual int64_t vocab_size() const = 0;

  // Starts a new batch (drops any previous state). prompts: B non-empty token lists.
  // Returns float32 [B, V] on the scorer's device: the full-vocabulary log_softmax (SPEC §2.1) after
  // each prompt's last token. Searches read it through gather_allowed() (selection.h).
  virtual at::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) = 0;

  // Like prefill(), but a scorer may defer the prompts' forward and run it together with the next
  // extend() (SPEC §3.3: the first round's verification feeds the prompt and the drafted tree in one
  // target forward). Slots, length() and prompt_length() are as after prefill(); the next extend()
  // must follow before any truncate/compact. prompt_logprobs() is then prefill()'s result. The
  // default prefills eagerly, so fakes need not implement it.
  virtual void prefill_deferred(const std::vector<std::vector<int64_t>>& prompts) { deferred_ = prefill(prompts); }
  // float32 [B, V] on the scorer's device: the log_softmax after each prompt's last token, available
  // once the prompts went through a forward (after prefill_deferred + extend, or at once for eager scorers).
  virtual at::Tensor prompt_logprobs() const { return deferred_; }

  // Appends n nodes to every request. tokens: int64 [B, n]; parents: int64 [B, n], each entry a slot
  // of the same request that exists before this node: a slot < length() at the call, or
  // length() + j for node j < i of this call; -1 marks a padding node (requests with fewer nodes
  // than n, or finished ones). Any device (read on the CPU). Returns float32 [B, n, V] on the
  // scorer's device, the log_softmax after each node. New node i of request b gets slot length() + i.
  virtual at::Tensor extend(const at::Tensor& tokens, const at::Tensor& parents) = 0;

  // Slots per request (prompt region incl. padding + all nodes).
  virtual int64_t length() const = 0;
  virtual int64_t batch_size() const = 0;
  virtual int64_t prompt_length(int64_t request) const = 0;

  // Keeps the first len slots of every request (len >= max prompt length is not required, but a
  // later extend() may only name kept slots).
  virtual void truncate(int64_t len) = 0;
  // Keeps, per request, the slots keep[b, :] (int64 [B, m], the same count m for every request, any
  // order; a kept slot's kept ancestors stay visible to it). Slot keep[b, j] becomes slot j. Callers
  // keep a node's ancestors (and the prompt) whenever they extend from it later.
  virtual void compact(const at::Tensor& keep) = 0;

  // Forwards run and the time spent in them since construction (zero for scorers that do not count).
  virtual ScorerCounters counters() const { return {}; }
  // Where the forwards run (and their log-probs stay).
  virtual at::Device device() const { return at::kCPU; }

 private:
  at::Tensor deferred_;  // float32 [B, V], CPU: the default prefill_deferred's eager result
};

// TreeScorer over a LlamaModel and one KvCache whose batch row b is request b. Bookkeeping on the
// CPU: per request a bool visibility matrix over its slots (row s = the slots s attends to) and a
// position per slot; each forward builds the additive mask [B, n, past + n] from it. Forwards run
// under InferenceMode on the model's device (inputs moved there without blocking), and the
// log-probs stay there. Forward time: wall clock on the CPU, CUDA events on a GPU (no sync).
class LlamaTreeScorer final : public TreeScorer {
 public:
  explicit LlamaTreeScorer(model::LlamaModel model);

  int64_t vocab_size() const override;
  at::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) override;
  void prefill_deferred(const std::vector<std::vector<int64_t>>& prompts) override;
  at::Tensor prompt_logprobs() const override;
  at::Tensor extend(const at::Tensor& tokens, const at::Tensor& parents) override;
  int64_t length() const override { return visible_.defined() ? visible_.size(1) : 0; }
  int64_t batch_size() const override { return static_cast<int64_t>(prompt_lengths_.size()); }
  int64_t prompt_length(int64_t request) const override;
  void truncate(int64_t len) override;
  void compact(const at::Tensor& keep) override;

  // Bookkeeping, for tests and for speculative decoding's tree layout.
  const at::Tensor& visible() const { return visible_; }      // bool [B, S, S], CPU
  const at::Tensor& positions() const { return positions_; }  // int64 [B, S], CPU
  const model::KvCache& cache() const { return cache_; }
  int64_t forward_calls() const { return forward_calls_; }
  ScorerCounters counters() const override;
  at::Device device() const override;

 private:
  at::Tensor run(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& new_visible);
  // Sets up the prompt slots (visibility, positions, lengths; clears the cache); returns the
  // right-padded prompt tokens int64 [B, width], CPU.
  at::Tensor set_prompts(const std::vector<std::vector<int64_t>>& prompts);
  // log_softmax after each prompt's last token from hidden states [B, >= width, hidden].
  at::Tensor prompt_rows(const at::Tensor& hidden);

  model::LlamaModel model_;
  model::KvCache cache_;
  // Grows the stores to hold `slots` slots (twice that, at least 64, when they must grow): extend()
  // writes the new nodes' rows in place instead of copying the whole [B, S, S] matrix per forward.
  void reserve_slots(int64_t slots);
  at::Tensor visible_;    // bool [B, S, S], CPU: a view of visible_store_
  at::Tensor positions_;  // int64 [B, S], CPU: a view of positions_store_
  at::Tensor visible_store_;    // bool [B, C, C], C >= S: rows and columns >= S are stale
  at::Tensor positions_store_;  // int64 [B, C]
  std::vector<int64_t> prompt_lengths_;
  at::Tensor pending_prompts_;  // int64 [B, width], CPU: prompts of prefill_deferred not yet fed; undefined once fed
  at::Tensor prompt_logprobs_;  // float32 [B, V], CPU: after the forward that fed the prompts
  int64_t forward_calls_ = 0;
  // Forward timing: CPU seconds so far, plus CUDA event pairs not read yet (read once complete).
  struct Timing;
  std::shared_ptr<Timing> timing_;
  // Starts/ends timing one forward (prefill or extend, incl. logits and log_softmax).
  void begin_forward();
  void end_forward();
};

}  // namespace atspeed::decode
