#include "core/model/llama.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <string>

#include "core/dist/communicator.h"
#include "core/errors.h"

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
  const at::Tensor idx = index.to(k[0].device());
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = k[i].index_select(2, idx);
    v[i] = v[i].index_select(2, idx);
  }
}

void KvCache::clear() {
  k.clear();
  v.clear();
}

// ---------------------------------------------------------------------------------------------
// Helpers

at::Tensor causal_mask(int64_t batch, int64_t n, int64_t past, at::ScalarType dtype, at::Device device) {
  // Column c is blocked for row i when c > past + i.
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor m = at::full({n, past + n}, -std::numeric_limits<float>::infinity(), opts).triu(past + 1);
  return m.unsqueeze(0).expand({batch, n, past + n}).contiguous();
}

std::pair<at::Tensor, at::Tensor> rotary_cos_sin(const at::Tensor& positions, int64_t head_dim, double theta,
                                                 at::ScalarType dtype) {
  auto fopts = at::TensorOptions().dtype(at::kFloat).device(positions.device());
  // HF: inv_freq = 1 / theta^(arange(0, d, 2) / d), computed in float32.
  at::Tensor exponents = at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong).device(positions.device()))
                             .to(at::kFloat) /
                         static_cast<float>(head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(at::scalar_tensor(theta, fopts), exponents);  // [head_dim/2] float32
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;            // [B, n, head_dim/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                                    // [B, n, head_dim]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

namespace {
// HF rotate_half: cat(-x2, x1) over the last dim halves.
at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x: [B, heads, n, head_dim]; cos/sin: [B, n, head_dim].
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  return x * c + rotate_half(x) * s;
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

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                       const at::Tensor& mask, at::Tensor* k_cache, at::Tensor* v_cache) {
  const int64_t b = x.size(0), n = x.size(1);
  at::Tensor q = q_proj->forward(x).view({b, n, num_heads, head_dim}).transpose(1, 2);     // [B, H, n, d]
  at::Tensor k = k_proj->forward(x).view({b, n, num_kv_heads, head_dim}).transpose(1, 2);  // [B, KV, n, d]
  at::Tensor v = v_proj->forward(x).view({b, n, num_kv_heads, head_dim}).transpose(1, 2);  // [B, KV, n, d]
  q = apply_rotary(q, cos, sin);
  k = apply_rotary(k, cos, sin);
  if (k_cache != nullptr) {
    if (k_cache->defined() && k_cache->size(2) > 0) {
      k = at::cat({*k_cache, k}, 2);
      v = at::cat({*v_cache, v}, 2);
    } else {
      k = k.contiguous();
      v = v.contiguous();
    }
    *k_cache = k;
    *v_cache = v;
  }
  const int64_t rep = num_heads / num_kv_heads;
  const at::Tensor kr = repeat_kv(k, rep), vr = repeat_kv(v, rep);  // [B, H, T, d]
  // Scores and softmax in float32, as HF's eager attention does.
  at::Tensor scores = at::matmul(q, kr.transpose(2, 3)).to(at::kFloat) / std::sqrt(static_cast<double>(head_dim));
  scores = scores + mask.to(at::kFloat).unsqueeze(1);  // [B, H, n, T]
  at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());
  at::Tensor out = at::matmul(probs, vr);  // [B, H, n, d]
  out = out.transpose(1, 2).reshape({b, n, num_heads * head_dim});
  return o_proj->forward(out);
}

LlamaMLPImpl::LlamaMLPImpl(const LlamaOptions& o) {
  const int64_t intermediate = o.intermediate_size / o.tp_size;  // this rank's share
  gate_proj = register_module("gate_proj", linear(o.hidden_size, intermediate, o.param_dtype));
  up_proj = register_module("up_proj", linear(o.hidden_size, intermediate, o.param_dtype));
  down_proj = register_module("down_proj", linear(intermediate, o.hidden_size, o.param_dtype));
}

at::Tensor LlamaMLPImpl::forward(const at::Tensor& x) {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaOptions& o) {
  self_attn = register_module("self_attn", LlamaAttention(o));
  mlp = register_module("mlp", LlamaMLP(o));
  input_layernorm = register_module("input_layernorm", RMSNorm(o.hidden_size, o.rms_norm_eps, o.param_dtype));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(o.hidden_size, o.rms_norm_eps, o.param_dtype));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                          const at::Tensor& mask, at::Tensor* k_cache, at::Tensor* v_cache,
                                          Communicator* tp) {
  at::Tensor a = self_attn->forward(input_layernorm->forward(x), cos, sin, mask, k_cache, v_cache);
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
  auto [cos, sin] = rotary_cos_sin(positions, options_.head_dim(), options_.rope_theta, h.scalar_type());
  const at::Tensor mask = attn_mask.to(h.device());
  for (int64_t i = 0; i < num_layers; ++i) {
    auto layer = model->layers->ptr<LlamaDecoderLayerImpl>(i);
    at::Tensor* kc = cache != nullptr ? &cache->k[i] : nullptr;
    at::Tensor* vc = cache != nullptr ? &cache->v[i] : nullptr;
    h = layer->forward(h, cos, sin, mask, kc, vc, tp_group_);
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
