// LLaMA decoder (HuggingFace LlamaForCausalLM layout) on the libtorch C++ frontend.
//
// Parameter names are HF's, so an HF state dict maps one to one:
//   model.embed_tokens.weight                          [V, hidden]
//   model.layers.{i}.self_attn.{q,o}_proj.weight       [hidden, hidden]
//   model.layers.{i}.self_attn.{k,v}_proj.weight       [kv_heads*head_dim, hidden]
//   model.layers.{i}.mlp.{gate,up}_proj.weight         [intermediate, hidden]
//   model.layers.{i}.mlp.down_proj.weight              [hidden, intermediate]
//   model.layers.{i}.{input,post_attention}_layernorm.weight [hidden]
//   model.norm.weight                                  [hidden]
//   lm_head.weight                                     [V, hidden]  (absent when tie_word_embeddings:
//                                                       the logits then use model.embed_tokens.weight)
// No biases. RMSNorm in float32, rotary embeddings with HF's rotate_half convention, SwiGLU MLP,
// grouped-query attention. Attention takes an explicit additive mask, so causal prefill, batched
// decoding and tree attention (SPEC §2.3, §3.3) all use the same forward.
//
// Tensor parallelism (Megatron, inference only). With LlamaOptions::tp_size = T > 1 the model is
// rank tp_rank's shard: q/k/v/gate/up hold 1/T of their output features (rank r owns query heads
// [r*H/T, (r+1)*H/T) and KV heads [r*KV/T, (r+1)*KV/T), which are exactly the KV heads its query
// heads use under GQA, so attention needs no communication), o/down hold the matching 1/T of their
// input features, and their partial outputs are summed by one all-reduce after o_proj and one after
// down_proj through the Communicator given to set_tensor_parallel(). Embeddings, norms and lm_head
// are replicated (simplest; they are small next to the layers at the shapes we serve), so every
// rank ends with the full logits. Parameter names stay the HF names; only the shapes shrink.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config_types.h"

namespace atspeed {
class Communicator;
}  // namespace atspeed

namespace atspeed::model {

// The model shape is the config section itself (HF LlamaConfig names); only the parameter dtype is
// resolved from its string form. validate() is ModelConfig::validate() plus a resolved vocabulary.
struct LlamaOptions : ModelConfig {
  at::ScalarType param_dtype = at::kFloat;  // resolved from ModelConfig::dtype (float32 or bfloat16)
  // Tensor parallelism: this model is shard tp_rank of tp_size (the config's dist.tp; 1 = the whole
  // model). tp_size must divide num_attention_heads, num_key_value_heads and intermediate_size.
  int64_t tp_size = 1;
  int64_t tp_rank = 0;  // [0, tp_size)

  // vocab_size must already be resolved (> 0). The result is unsharded (tp_size 1).
  static LlamaOptions from_config(const ModelConfig& config);
  // The same options for shard `rank` of `size`, validated.
  LlamaOptions sharded(int64_t rank, int64_t size) const;
  // Throws Error(Config) naming the offending field.
  void validate() const;
};

// How tensor parallelism splits a parameter (Megatron): Column splits the output features (dim 0
// of a [out, in] weight: q/k/v/gate/up, heads split across ranks), Row splits the input features
// (dim 1: o_proj, down_proj; followed by an all-reduce), None is replicated (embeddings, norms, head).
enum class TpSplit { None, Column, Row };
// The split of a parameter by its HF name ("model.layers.0.self_attn.q_proj.weight" -> Column).
TpSplit tp_split_of(const std::string& param_name);
const char* to_string(TpSplit split);

// The part of a full parameter that tensor-parallel rank `rank` of `size` holds: [begin, end) of
// dim (0 for Column, 1 for Row). For TpSplit::None (or size 1) the whole tensor along dim 0.
struct TpSlice {
  int dim = 0;
  int64_t begin = 0;
  int64_t end = 0;
};
// full_shape: the unsharded parameter's shape. Throws Error(Config) when the split dimension does
// not divide by size.
TpSlice tp_slice_of(const std::string& param_name, const std::vector<int64_t>& full_shape, int64_t rank, int64_t size);
// The shard of a full parameter tensor (a view: narrow along the split dim).
at::Tensor tp_shard(const at::Tensor& full, const std::string& param_name, int64_t rank, int64_t size);

// Rotary tables of one forward: x * cos + rotate_half(x) * sin, computed as
// x * cos + x.roll(head_dim / 2) * sin_signed (the same products, in one pass and with one copy).
struct Rope {
  at::Tensor cos;         // [B, n, head_dim], model dtype
  at::Tensor sin_signed;  // [B, n, head_dim], model dtype: sin with its first half negated
};

// Per-layer key/value cache. Token j of the cache is sequence slot j (the column order the
// attention masks refer to), independent of its position id.
//
// Inference forwards append in place: k[l] and v[l] are views of the first length() tokens of a
// larger store, and new tokens are written into its spare room (no concatenation of the whole
// cache per forward; the store doubles when full). Anything may still assign k[l]/v[l] a fresh
// tensor (a gather, an index_select): the next append then copies it into a new store. Copies of a
// KvCache share the store until one of them appends, which first moves that one to its own store.
struct KvCache {
  // kv_heads below is this rank's: num_key_value_heads / tp_size. Every operation works on dim 2
  // (or gathers along it), so the cache is agnostic of how many heads dim 1 holds.
  std::vector<at::Tensor> k;  // per layer: [B, kv_heads, len, head_dim], model dtype; empty until first forward
  std::vector<at::Tensor> v;  // per layer: [B, kv_heads, len, head_dim], model dtype

  // Number of cached tokens (0 when empty).
  int64_t length() const;
  bool empty() const { return length() == 0; }
  // Keeps the first len tokens (0 <= len <= length()).
  void truncate(int64_t len);
  // Keeps the tokens at index (int64 [len'], len' <= length(), any order, values in [0, length())),
  // in index order: gather() with the same index for every row.
  void compact(const at::Tensor& index);
  // Per batch row b keeps the tokens keep[b, :] (int64 [B, m], m <= length(), on the cache's device),
  // in that order, written back into the store (so it can only shrink the cache, never grow it).
  void gather(const at::Tensor& keep);
  void clear();
  // Appends k_new/v_new ([B, kv_heads, n, head_dim], any strides) to layer `layer`, in place when the
  // store has room. Inference only (the store is written in place, which autograd cannot follow).
  void append(size_t layer, const at::Tensor& k_new, const at::Tensor& v_new);
  // append() without the copy: extends layer `layer` by n tokens and returns where their K and V
  // go ([B, kv_heads, n, head_dim] views of the store, to be written before the next read). like:
  // a tensor [B, kv_heads, *, head_dim] of the cache's dtype and device (sizes a new store).
  std::pair<at::Tensor, at::Tensor> append_slots(size_t layer, int64_t n, const at::Tensor& like);
  // Tokens the store of layer 0 can hold before the next reallocation (0 without a store).
  int64_t capacity() const;

 private:
  struct Store {
    std::vector<at::Tensor> k, v;  // per layer: [B, kv_heads, capacity, head_dim]
  };
  std::shared_ptr<Store> store_;
};
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, at::ScalarType dtype = at::kFloat);
  at::Tensor forward(const at::Tensor& x);  // x: [..., dim] -> same shape and dtype
  at::Tensor weight;                        // [dim], model dtype, initialised to ones
  double eps;
};
TORCH_MODULE(RMSNorm);

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaOptions& o);
  // x: [B, n, hidden]; rope: the forward's rotary tables; mask: [B, n, past+n] additive;
  // cache (nullable): layer `layer` holds past tokens before the call and past+n after it.
  // With grad mode on: HF's eager attention, op for op (training). Without: the inference path, the
  // same function with fewer ops: one fused q/k/v projection, one rotary pass over q and k together,
  // K/V appended to the cache in place, and (float32) at::scaled_dot_product_attention with grouped
  // heads; bf16 keeps the eager attention arithmetic.
  at::Tensor forward(const at::Tensor& x, const Rope& rope, const at::Tensor& mask, KvCache* cache,
                     size_t layer);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  // This rank's head counts (the config's divided by tp_size); head_dim is the model's.
  int64_t num_heads, num_kv_heads, head_dim;

 private:
  at::Tensor qkv_weight_;  // [(heads + 2 kv_heads) * head_dim, hidden]: q/k/v_proj.weight are views of it once fused
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaOptions& o);
  at::Tensor forward(const at::Tensor& x);  // down(silu(gate(x)) * up(x)); gate and up fused without grad mode
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  at::Tensor gate_up_weight_;  // [2 * intermediate, hidden]: gate/up_proj.weight are views of it once fused
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaOptions& o);
  // tp (nullable): the tensor-parallel group; the attention and MLP outputs are summed over it.
  at::Tensor forward(const at::Tensor& x, const Rope& rope, const at::Tensor& mask, KvCache* cache, size_t layer,
                     Communicator* tp = nullptr);
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// HF's LlamaModel: the decoder stack without the head ("model." prefix).
class LlamaBackboneImpl : public torch::nn::Module {
 public:
  explicit LlamaBackboneImpl(const LlamaOptions& o);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaBackbone);

// HF's LlamaForCausalLM.
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaOptions& o);

  // tokens: [B, n] int64; positions: [B, n] int64 (rotary position ids);
  // attn_mask: [B, n, past+n] additive float (0 = attend, -inf = blocked), past = cache ? cache->length() : 0;
  //   columns [0, past) are the cached tokens, column past + j is new token j.
  // cache (nullable): the new tokens' K/V are appended to it.
  // Returns logits [B, n, V] in the model dtype.
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& attn_mask,
                     KvCache* cache = nullptr);
  // Final hidden states [B, n, hidden] (after model.norm); same arguments as forward.
  at::Tensor hidden_states(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& attn_mask,
                           KvCache* cache = nullptr);
  // hidden: [..., hidden] -> logits [..., V].
  at::Tensor logits(const at::Tensor& hidden);

  const LlamaOptions& options() const { return options_; }

  // The tensor-parallel group (not owned; it must outlive the model's forwards). Required before
  // the first forward when options().tp_size > 1: its size and rank must be tp_size and tp_rank
  // (Error(Distributed) otherwise). With tp_size 1 a 1-rank group (or nullptr) is accepted and
  // ignored, so the unsharded forward is unchanged. Tensors in the group's domain: MPI on CPU
  // models, NCCL on CUDA models. Sharded forwards are inference-only (no autograd through the
  // all-reduce): they require grad mode off (NoGradGuard or InferenceMode).
  void set_tensor_parallel(Communicator* group);
  Communicator* tensor_parallel() const { return tp_group_; }

  LlamaBackbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  LlamaOptions options_;
  Communicator* tp_group_ = nullptr;  // non-owning; null unless tp_size > 1
  at::Tensor inv_freq_;               // [head_dim / 2] float32 on the last forward's device: HF's rotary frequencies
};
TORCH_MODULE(LlamaModel);

// Plain causal additive mask [B, n, past+n]: new token i sees all past tokens and new tokens 0..i.
at::Tensor causal_mask(int64_t batch, int64_t n, int64_t past, at::ScalarType dtype, at::Device device);

}  // namespace atspeed::model
