#include "core/model/llama.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/model/fused_cpu.h"

namespace atspeed::model {

// ---------------------------------------------------------------------------------------------
// LlamaOptions

LlamaOptions LlamaOptions::from_config(const ModelConfig& c) {
  LlamaOptions o;
  static_cast<ModelConfig&>(o) = c;
  if (c.dtype == "float32") {
    o.param_dtype = at::kFloat;
  } else if (c.dtype == "bfloat16") {
    o.param_dtype = at::kBFloat16;
  } else {
    ATSPEED_THROW(Config, "model.dtype: must be float32 or bfloat16 (got '", c.dtype, "')");
  }
  o.validate();
  return o;
}

LlamaOptions LlamaOptions::sharded(int64_t rank, int64_t size) const {
  LlamaOptions o = *this;
  o.tp_rank = rank;
  o.tp_size = size;
  o.validate();
  return o;
}

void LlamaOptions::validate() const {
  ModelConfig::validate();
  ATSPEED_ENSURE(Config, vocab_size > 0, "model.vocab_size: must be > 0 (got ", vocab_size, ")");
  ATSPEED_ENSURE(Config, tp_size >= 1, "dist.tp: the tensor-parallel degree must be >= 1 (got ", tp_size, ")");
  ATSPEED_ENSURE(Config, tp_rank >= 0 && tp_rank < tp_size, "tensor-parallel rank ", tp_rank, " is outside [0, ",
                 tp_size, ")");
  // Heads (and KV heads, for GQA) are split whole across ranks, as are the MLP's hidden features.
  auto divides = [&](int64_t n, const char* field) {
    ATSPEED_ENSURE(Config, n % tp_size == 0, "dist.tp=", tp_size, " does not divide model.", field, " (", n, ") of model '",
                   name, "': tensor parallelism splits it evenly across ranks; pick a tp that divides ",
                   "num_attention_heads, num_key_value_heads and intermediate_size");
  };
  divides(num_attention_heads, "num_attention_heads");
  divides(num_key_value_heads, "num_key_value_heads");
  divides(intermediate_size, "intermediate_size");
}

TpSplit tp_split_of(const std::string& name) {
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (has(".q_proj.") || has(".k_proj.") || has(".v_proj.") || has(".gate_proj.") || has(".up_proj.")) {
    return TpSplit::Column;
  }
  if (has(".o_proj.") || has(".down_proj.")) return TpSplit::Row;
  return TpSplit::None;
}

TpSlice tp_slice_of(const std::string& name, const std::vector<int64_t>& full_shape, int64_t rank, int64_t size) {
  ATSPEED_CHECK(size >= 1 && rank >= 0 && rank < size, "tp_slice_of: rank ", rank, " of ", size);
  const TpSplit split = size == 1 ? TpSplit::None : tp_split_of(name);
  TpSlice slice;
  slice.dim = split == TpSplit::Row ? 1 : 0;
  ATSPEED_CHECK(static_cast<int64_t>(full_shape.size()) > slice.dim, "tp_slice_of: '", name, "' has ",
                full_shape.size(), " dims");
  const int64_t n = full_shape[static_cast<size_t>(slice.dim)];
  if (split == TpSplit::None) {
    slice.end = n;
    return slice;
  }
  ATSPEED_ENSURE(Config, n % size == 0, "tensor parallelism: dim ", slice.dim, " (", n, ") of '", name,
                 "' does not divide by tp=", size);
  slice.begin = rank * (n / size);
  slice.end = slice.begin + n / size;
  return slice;
}

at::Tensor tp_shard(const at::Tensor& full, const std::string& name, int64_t rank, int64_t size) {
  const TpSlice s = tp_slice_of(name, full.sizes().vec(), rank, size);
  return full.narrow(s.dim, s.begin, s.end - s.begin);
}

const char* to_string(TpSplit split) {
  switch (split) {
    case TpSplit::Column: return "column";
    case TpSplit::Row: return "row";
    case TpSplit::None: break;
  }
  return "none";
}

// ---------------------------------------------------------------------------------------------
// KvCache

int64_t KvCache::length() const {
  if (k.empty() || !k[0].defined()) return 0;
  return k[0].size(2);
}

void KvCache::truncate(int64_t len) {
  const int64_t cur = length();
  ATSPEED_CHECK(len >= 0 && len <= cur, "KvCache::truncate(", len, ") with length ", cur);
  if (len == cur) return;
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = k[i].narrow(2, 0, len);
    v[i] = v[i].narrow(2, 0, len);
  }
}

void KvCache::compact(const at::Tensor& index) {
  const int64_t cur = length();
  ATSPEED_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong, "KvCache::compact: index must be int64 [len']");
  if (index.numel() > 0) {
    ATSPEED_CHECK(index.min().item<int64_t>() >= 0 && index.max().item<int64_t>() < cur,
                  "KvCache::compact: index outside [0, ", cur, ")");
  }
  if (k.empty()) return;
  // The same index for every row: gather's path (written back into the store, no new allocation).
  gather(index.to(k[0].device()).view({1, -1}).expand({k[0].size(0), index.numel()}).contiguous());
}

void KvCache::gather(const at::Tensor& keep) {
  const int64_t cur = length();
  ATSPEED_CHECK(keep.dim() == 2 && keep.scalar_type() == at::kLong, "KvCache::gather: keep must be int64 [B, m]");
  if (k.empty() || cur == 0) return;
  const int64_t b = k[0].size(0), m = keep.size(1);
  ATSPEED_CHECK(keep.size(0) == b, "KvCache::gather: keep has ", keep.size(0), " rows, the cache ", b);
  ATSPEED_CHECK(m <= cur, "KvCache::gather: keeps ", m, " of ", cur, " tokens");
  const at::Tensor keep_dev = keep.to(k[0].device());
  const bool own_store = store_ && store_.use_count() == 1;
  for (size_t l = 0; l < k.size(); ++l) {
    for (int side = 0; side < 2; ++side) {
      at::Tensor& view = side == 0 ? k[l] : v[l];
      const at::Tensor idx = keep_dev.view({b, 1, m, 1}).expand({b, view.size(1), m, view.size(3)});
      const at::Tensor kept = view.gather(2, idx);  // a new tensor: the store may be overwritten below
      // Written back at the front of the same storage when the cache is a view of its own store.
      at::Tensor* store = own_store && l < store_->k.size() ? &(side == 0 ? store_->k : store_->v)[l] : nullptr;
      if (store != nullptr && store->defined() && view.is_alias_of(*store)) {
        store->narrow(2, 0, m).copy_(kept);
        view = store->narrow(2, 0, m);
      } else {
        view = kept;
      }
    }
  }
}

void KvCache::clear() {
  k.clear();
  v.clear();
  store_.reset();
}

int64_t KvCache::capacity() const {
  return store_ && !store_->k.empty() && store_->k[0].defined() ? store_->k[0].size(2) : 0;
}

namespace {
// True when view is store.narrow(2, 0, view.size(2)): same storage, offset and strides.
bool is_prefix_of(const at::Tensor& view, const at::Tensor& store) {
  return view.defined() && store.defined() && view.is_alias_of(store) &&
         view.storage_offset() == store.storage_offset() && view.strides() == store.strides() &&
         view.size(0) == store.size(0) && view.size(1) == store.size(1) && view.size(3) == store.size(3) &&
         view.size(2) <= store.size(2);
}
}  // namespace

std::pair<at::Tensor, at::Tensor> KvCache::append_slots(size_t layer, int64_t n, const at::Tensor& like) {
  ATSPEED_CHECK(layer < k.size() && k.size() == v.size(), "KvCache::append: layer ", layer, " of ", k.size());
  ATSPEED_CHECK(like.dim() == 4 && n >= 0, "KvCache::append: K/V must be [B, kv_heads, n, head_dim]");
  // A store shared with a copy of this cache is left to the copy: this one moves to its own.
  if (!store_ || store_.use_count() > 1) store_ = std::make_shared<Store>();
  if (store_->k.size() < k.size()) {
    store_->k.resize(k.size());
    store_->v.resize(k.size());
  }
  std::pair<at::Tensor, at::Tensor> slots;
  for (int side = 0; side < 2; ++side) {
    at::Tensor& view = side == 0 ? k[layer] : v[layer];
    at::Tensor& store = side == 0 ? store_->k[layer] : store_->v[layer];
    const int64_t past = view.defined() ? view.size(2) : 0;
    if (!(is_prefix_of(view, store) && past + n <= store.size(2))) {
      // Room for twice what is needed (at least 64 tokens), so a growing cache copies O(log) times.
      const int64_t cap = std::max<int64_t>(2 * (past + n), 64);
      at::Tensor grown = at::empty({like.size(0), like.size(1), cap, like.size(3)}, like.options());
      if (past > 0) grown.narrow(2, 0, past).copy_(view);
      store = grown;
    }
    (side == 0 ? slots.first : slots.second) = store.narrow(2, past, n);
    view = store.narrow(2, 0, past + n);
  }
  return slots;
}

void KvCache::append(size_t layer, const at::Tensor& k_new, const at::Tensor& v_new) {
  auto [k_slots, v_slots] = append_slots(layer, k_new.size(2), k_new);
  k_slots.copy_(k_new);
  v_slots.copy_(v_new);
}

// ---------------------------------------------------------------------------------------------
// Helpers

at::Tensor causal_mask(int64_t batch, int64_t n, int64_t past, at::ScalarType dtype, at::Device device) {
  // Column c is blocked for row i when c > past + i.
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor m = at::full({n, past + n}, -std::numeric_limits<float>::infinity(), opts).triu(past + 1);
  return m.unsqueeze(0).expand({batch, n, past + n}).contiguous();
}

namespace {
// HF's x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1): x.roll(half) is cat(x2, x1)
// and sin_signed carries the minus sign, so the products are HF's bit for bit.
// x: [..., head_dim]; cos/sin_signed broadcast against it.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin_signed) {
  return x * cos + x.roll(x.size(-1) / 2, -1) * sin_signed;
}

// HF repeat_kv: [B, kv, T, d] -> [B, kv*rep, T, d], head h uses kv head h / rep.
at::Tensor repeat_kv(const at::Tensor& x, int64_t rep) {
  if (rep == 1) return x;
  const int64_t b = x.size(0), kv = x.size(1), t = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kv, rep, t, d}).reshape({b, kv * rep, t, d});
}

// Modules are built in float32 (torch's own init draws, so the random stream is the same for every
// dtype) and converted to the model's dtype right away: a bf16 7B model then never holds more than
// one float32 tensor at a time, instead of 26 GB of float32 parameters.
void to_dtype(at::Tensor& weight, at::ScalarType dtype) {
  if (weight.scalar_type() != dtype) weight.set_data(weight.detach().to(dtype));
}

torch::nn::Linear linear(int64_t in, int64_t out, at::ScalarType dtype) {
  torch::nn::Linear l(torch::nn::LinearOptions(in, out).bias(false));
  to_dtype(l->weight, dtype);
  return l;
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Modules

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, at::ScalarType dtype) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, at::TensorOptions().dtype(dtype)));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  if (fused_cpu::applies(x) && x.numel() <= fused_cpu::kMaxNormElements) return fused_cpu::rms_norm(x, weight, eps);
  const auto in_dtype = x.scalar_type();
  at::Tensor h = x.to(at::kFloat);
  at::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(var + eps);
  return weight * h.to(in_dtype);
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaOptions& o)
    : num_heads(o.num_attention_heads / o.tp_size), num_kv_heads(o.num_key_value_heads / o.tp_size),
      head_dim(o.head_dim()) {
  q_proj = register_module("q_proj", linear(o.hidden_size, num_heads * head_dim, o.param_dtype));
  k_proj = register_module("k_proj", linear(o.hidden_size, num_kv_heads * head_dim, o.param_dtype));
  v_proj = register_module("v_proj", linear(o.hidden_size, num_kv_heads * head_dim, o.param_dtype));
  o_proj = register_module("o_proj", linear(num_heads * head_dim, o.hidden_size, o.param_dtype));
}

namespace {
// The weights of `parts` concatenated along dim 0, each part's data made a view of it, so the model
// holds every weight once and optimizer steps or loads into a part are seen by the fused weight.
// Rebuilt when a part no longer lives there (model.to(), or a tensor replaced by set_data).
const at::Tensor& fused_weight(at::Tensor& fused, std::initializer_list<torch::nn::Linear*> parts) {
  bool fresh = fused.defined();
  int64_t offset = 0;
  for (auto* p : parts) {
    const at::Tensor& w = (*p)->weight;
    fresh = fresh && w.is_alias_of(fused) && w.is_contiguous() && w.scalar_type() == fused.scalar_type() &&
            w.storage_offset() == fused.storage_offset() + offset && w.size(1) == fused.size(1);
    offset += w.numel();
  }
  if (fresh && offset == fused.numel()) return fused;
  // Outside inference mode, so the parameters stay usable for training afterwards.
  c10::InferenceMode normal(false);
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> ws;
  for (auto* p : parts) ws.push_back((*p)->weight.detach());
  fused = at::cat(ws, 0);
  int64_t row = 0;
  for (auto* p : parts) {
    const int64_t rows = (*p)->weight.size(0);
    (*p)->weight.set_data(fused.narrow(0, row, rows));
    row += rows;
  }
  return fused;
}

// HF's eager attention: q [B, H, n, d], k/v [B, KV, T, d], mask [B, n, T] additive; scores and softmax
// in float32. Returns [B, H, n, d].
at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                           int64_t rep, int64_t head_dim) {
  const at::Tensor kr = repeat_kv(k, rep), vr = repeat_kv(v, rep);  // [B, H, T, d]
  at::Tensor scores = at::matmul(q, kr.transpose(2, 3)).to(at::kFloat) / std::sqrt(static_cast<double>(head_dim));
  scores = scores + mask.to(at::kFloat).unsqueeze(1);  // [B, H, n, T]
  const at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());
  return at::matmul(probs, vr);
}
}  // namespace

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const Rope& rope, const at::Tensor& mask, KvCache* cache,
                                       size_t layer) {
  const int64_t b = x.size(0), n = x.size(1);
  if (!at::GradMode::is_enabled()) {
    // One projection for q, k and v: [B, n, H + 2 KV, d].
    const at::Tensor qkv = at::linear(x, fused_weight(qkv_weight_, {&q_proj, &k_proj, &v_proj}))
                               .view({b, n, num_heads + 2 * num_kv_heads, head_dim});
    at::Tensor q, k, v;
    if (fused_cpu::applies(qkv)) {
      // One pass: q rotated into its own tensor, k rotated and v copied straight into the cache.
      at::Tensor k_new, v_new;
      if (cache != nullptr) {
        std::tie(k_new, v_new) = cache->append_slots(layer, n, qkv.narrow(2, 0, num_kv_heads).transpose(1, 2));
      } else {
        k_new = at::empty({b, num_kv_heads, n, head_dim}, qkv.options());
        v_new = at::empty_like(k_new);
      }
      q = fused_cpu::rotary_split(qkv, rope.cos, rope.sin_signed, num_heads, num_kv_heads, k_new, v_new);
      k = cache != nullptr ? cache->k[layer] : k_new;
      v = cache != nullptr ? cache->v[layer] : v_new;
    } else {
      // Rotary over the q and k heads at once; cos/sin [B, n, d] broadcast over the heads.
      const at::Tensor qk = apply_rotary(qkv.narrow(2, 0, num_heads + num_kv_heads), rope.cos.unsqueeze(2),
                                         rope.sin_signed.unsqueeze(2));  // [B, n, H + KV, d]
      q = qk.narrow(2, 0, num_heads).transpose(1, 2);                    // [B, H, n, d]
      k = qk.narrow(2, num_heads, num_kv_heads).transpose(1, 2);         // [B, KV, n, d]
      v = qkv.narrow(2, num_heads + num_kv_heads, num_kv_heads).transpose(1, 2);
      if (cache != nullptr) {
        cache->append(layer, k, v);
        k = cache->k[layer];
        v = cache->v[layer];
      }
    }
    // float32/64: one fused kernel (mask [B, n, T] -> [B, 1, n, T] in the query's dtype). bf16 keeps
    // HF's eager arithmetic (scores and softmax in float32): the CPU's fused kernel computes them in
    // bf16, which moved strict-vs-target lists beyond the near-tie bound of the device tests.
    const at::Tensor out = q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble
                               ? at::scaled_dot_product_attention(q, k, v, mask.unsqueeze(1), 0.0, false, std::nullopt,
                                                                  /*enable_gqa=*/num_heads != num_kv_heads)
                               : eager_attention(q, k, v, mask, num_heads / num_kv_heads, head_dim);
    return at::linear(out.transpose(1, 2).reshape({b, n, num_heads * head_dim}), o_proj->weight);
  }
  at::Tensor q = q_proj->forward(x).view({b, n, num_heads, head_dim}).transpose(1, 2);     // [B, H, n, d]
  at::Tensor k = k_proj->forward(x).view({b, n, num_kv_heads, head_dim}).transpose(1, 2);  // [B, KV, n, d]
  at::Tensor v = v_proj->forward(x).view({b, n, num_kv_heads, head_dim}).transpose(1, 2);  // [B, KV, n, d]
  const at::Tensor cos = rope.cos.unsqueeze(1), sin_signed = rope.sin_signed.unsqueeze(1);
  q = apply_rotary(q, cos, sin_signed);
  k = apply_rotary(k, cos, sin_signed);
  if (cache != nullptr) {
    at::Tensor& k_cache = cache->k[layer];
    at::Tensor& v_cache = cache->v[layer];
    if (k_cache.defined() && k_cache.size(2) > 0) {
      k = at::cat({k_cache, k}, 2);
      v = at::cat({v_cache, v}, 2);
    } else {
      k = k.contiguous();
      v = v.contiguous();
    }
    k_cache = k;
    v_cache = v;
  }
  const at::Tensor out = eager_attention(q, k, v, mask, num_heads / num_kv_heads, head_dim);  // [B, H, n, d]
  return o_proj->forward(out.transpose(1, 2).reshape({b, n, num_heads * head_dim}));
}

LlamaMLPImpl::LlamaMLPImpl(const LlamaOptions& o) {
  const int64_t intermediate = o.intermediate_size / o.tp_size;  // this rank's share
  gate_proj = register_module("gate_proj", linear(o.hidden_size, intermediate, o.param_dtype));
  up_proj = register_module("up_proj", linear(o.hidden_size, intermediate, o.param_dtype));
  down_proj = register_module("down_proj", linear(intermediate, o.hidden_size, o.param_dtype));
}

at::Tensor LlamaMLPImpl::forward(const at::Tensor& x) {
  if (!at::GradMode::is_enabled()) {
    const int64_t inter = gate_proj->weight.size(0);
    const at::Tensor gu = at::linear(x, fused_weight(gate_up_weight_, {&gate_proj, &up_proj}));  // [..., 2 I]
    const at::Tensor act = fused_cpu::applies(gu) && gu.numel() / 2 <= fused_cpu::kMaxTranscendentalElements
                               ? fused_cpu::silu_mul(gu)
                               : at::silu(gu.narrow(-1, 0, inter)) * gu.narrow(-1, inter, inter);
    return at::linear(act, down_proj->weight);
  }
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaOptions& o) {
  self_attn = register_module("self_attn", LlamaAttention(o));
  mlp = register_module("mlp", LlamaMLP(o));
  input_layernorm = register_module("input_layernorm", RMSNorm(o.hidden_size, o.rms_norm_eps, o.param_dtype));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(o.hidden_size, o.rms_norm_eps, o.param_dtype));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const Rope& rope, const at::Tensor& mask, KvCache* cache,
                                          size_t layer, Communicator* tp) {
  at::Tensor a = self_attn->forward(input_layernorm->forward(x), rope, mask, cache, layer);
  if (tp != nullptr) tp->all_reduce(a, ReduceOp::Sum);  // row-parallel o_proj: sum the partial products
  at::Tensor h = x + a;
  at::Tensor m = mlp->forward(post_attention_layernorm->forward(h));
  if (tp != nullptr) tp->all_reduce(m, ReduceOp::Sum);  // row-parallel down_proj
  return h + m;
}

LlamaBackboneImpl::LlamaBackboneImpl(const LlamaOptions& o) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(o.vocab_size, o.hidden_size));
  to_dtype(embed_tokens->weight, o.param_dtype);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(o));
  norm = register_module("norm", RMSNorm(o.hidden_size, o.rms_norm_eps, o.param_dtype));
}

LlamaModelImpl::LlamaModelImpl(const LlamaOptions& o) : options_(o) {
  options_.validate();
  model = register_module("model", LlamaBackbone(options_));
  if (!options_.tie_word_embeddings) {
    lm_head = register_module("lm_head", linear(options_.hidden_size, options_.vocab_size, options_.param_dtype));
  }
  // HF init: normal(0, 0.02) for linear and embedding weights; RMSNorm weights stay ones.
  // Drawn in float32 whatever the dtype (the same values as a float32 model, rounded).
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    if (p.key().find("layernorm") == std::string::npos && p.key().find("norm.weight") == std::string::npos) {
      if (p.value().scalar_type() == at::kFloat) {
        p.value().normal_(0.0, 0.02);
      } else {
        p.value().copy_(at::empty(p.value().sizes(), at::kFloat).normal_(0.0, 0.02));
      }
    }
  }
}

void LlamaModelImpl::set_tensor_parallel(Communicator* group) {
  if (options_.tp_size == 1) {
    ATSPEED_ENSURE(Distributed, group == nullptr || group->size() == 1, "set_tensor_parallel: model is unsharded ",
                   "(tp 1) but the group has ", group ? group->size() : 0, " ranks");
    tp_group_ = nullptr;
    return;
  }
  ATSPEED_ENSURE(Distributed, group != nullptr, "set_tensor_parallel: a model sharded ", options_.tp_size,
                 " ways needs a communicator");
  ATSPEED_ENSURE(Distributed, group->size() == options_.tp_size && group->rank() == options_.tp_rank,
                 "set_tensor_parallel: model shard ", options_.tp_rank, " of ", options_.tp_size,
                 " given a group where this process is rank ", group->rank(), " of ", group->size());
  tp_group_ = group;
}

at::Tensor LlamaModelImpl::hidden_states(const at::Tensor& tokens, const at::Tensor& positions,
                                         const at::Tensor& attn_mask, KvCache* cache) {
  const int64_t num_layers = options_.num_hidden_layers;
  ATSPEED_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong, "tokens must be [B, n] int64");
  ATSPEED_CHECK(positions.sizes() == tokens.sizes() && positions.scalar_type() == at::kLong,
                "positions must be [B, n] int64 like tokens");
  const int64_t b = tokens.size(0), n = tokens.size(1);
  const int64_t past = cache != nullptr ? cache->length() : 0;
  if (options_.tp_size > 1) {
    ATSPEED_ENSURE(Distributed, tp_group_ != nullptr, "model shard ", options_.tp_rank, " of ", options_.tp_size,
                   ": call set_tensor_parallel() before the forward");
    // The all-reduce is not differentiable here; training is data-parallel only.
    ATSPEED_ENSURE(Distributed, !at::GradMode::is_enabled(),
                   "a tensor-parallel model is inference-only: run it under NoGradGuard or InferenceMode");
  }
  ATSPEED_CHECK(attn_mask.dim() == 3 && attn_mask.size(0) == b && attn_mask.size(1) == n &&
                    attn_mask.size(2) == past + n,
                "attn_mask must be [B, n, past+n] = [", b, ", ", n, ", ", past + n, "], got ", attn_mask.sizes());
  if (cache != nullptr) {
    if (past == 0) {
      cache->k.assign(num_layers, at::Tensor());
      cache->v.assign(num_layers, at::Tensor());
    }
    ATSPEED_CHECK(static_cast<int64_t>(cache->k.size()) == num_layers && cache->v.size() == cache->k.size(),
                  "KvCache has ", cache->k.size(), " layers, model has ", num_layers);
    ATSPEED_CHECK(past == 0 || cache->k[0].size(0) == b, "KvCache batch ", cache->k[0].size(0), " != ", b);
  }
  at::Tensor h = model->embed_tokens->forward(tokens);  // [B, n, hidden]
  const int64_t head_dim = options_.head_dim(), half = head_dim / 2;
  if (!inv_freq_.defined() || inv_freq_.device() != h.device()) {
    // HF: inv_freq = 1 / theta^(arange(0, d, 2) / d), in float32; kept outside inference mode.
    c10::InferenceMode normal(false);
    auto fopts = at::TensorOptions().dtype(at::kFloat).device(h.device());
    at::Tensor exponents = at::arange(0, head_dim, 2, fopts.dtype(at::kLong)).to(at::kFloat) / static_cast<float>(head_dim);
    inv_freq_ = 1.0 / at::pow(at::scalar_tensor(options_.rope_theta, fopts), exponents);
  }
  Rope rope;
  if (fused_cpu::applies(h) && positions.device().is_cpu() &&
      positions.numel() * half <= fused_cpu::kMaxTranscendentalElements) {
    fused_cpu::rope_tables(positions, inv_freq_, rope.cos, rope.sin_signed);
  } else {
    at::Tensor freqs = positions.to(h.device()).to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, n, d/2]
    at::Tensor emb = at::cat({freqs, freqs}, -1);                                           // [B, n, d]
    rope.cos = emb.cos().to(h.scalar_type());
    const at::Tensor sin = emb.sin().to(h.scalar_type());
    rope.sin_signed = at::cat({-sin.narrow(-1, 0, half), sin.narrow(-1, half, head_dim - half)}, -1);
  }
  // The inference path's attention takes the mask in the model dtype; the eager path casts to float32.
  const at::Tensor mask = at::GradMode::is_enabled() ? attn_mask.to(h.device())
                                                     : attn_mask.to(h.device(), h.scalar_type());
  for (int64_t i = 0; i < num_layers; ++i) {
    auto layer = model->layers->ptr<LlamaDecoderLayerImpl>(i);
    h = layer->forward(h, rope, mask, cache, static_cast<size_t>(i), tp_group_);
  }
  return model->norm->forward(h);
}

at::Tensor LlamaModelImpl::logits(const at::Tensor& hidden) {
  if (lm_head) return lm_head->forward(hidden);
  return at::linear(hidden, model->embed_tokens->weight);
}

at::Tensor LlamaModelImpl::forward(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& attn_mask,
                                   KvCache* cache) {
  return logits(hidden_states(tokens, positions, attn_mask, cache));
}

}  // namespace atspeed::model
