#!/usr/bin/env python3
"""Regenerates tests/data/parity/: a tiny random HuggingFace LLaMA and the logits `transformers`
computes with it, so tests/unit/test_parity.cpp can check that our C++ LlamaModel (and the
safetensors reader, the HF config mapping and `atspeed convert`) reproduce HF exactly.

Run by a developer when the fixture must change (not by CI; the output is committed):

    . launch/setup.sh   # the pinned torch venv
    "$ATSPEED_TORCH_VENV/bin/pip" install transformers safetensors
    "$ATSPEED_TORCH_VENV/bin/python" tools/make_parity_fixture.py [--out tests/data/parity]

Outputs (all float32, about 100 KB together):
  config.json          HF LlamaConfig, as save_pretrained writes it
  model.safetensors    the weights under HF names (model.layers.0.self_attn.q_proj.weight, ...)
  fixture.safetensors  inputs and expected logits:
    causal_input_ids   int64 [1, T]      a plain sequence
    causal_logits      f32   [1, T, V]   HF logits for it (positions 0..T-1, causal)
    tree_prompt_ids    int64 [1, L]      a prompt
    tree_prompt_logits f32   [1, L, V]
    tree_node_tokens   int64 [N]         tree nodes after the prompt, parents before children
    tree_node_parents  int64 [N]         index of the parent node, -1 = hangs off the prompt's end
    tree_node_depths   int64 [N]         1 for children of the prompt, 2 for their children, ...
    tree_node_logits   f32   [N, V]      for node i: HF on (prompt + ancestors of i + i) as one causal
                                         sequence at positions 0..len-1, last row. So node i sits at
                                         position L + depth(i) - 1 (SPEC §2.3/§3.3 tree layout).
  The __metadata__ of fixture.safetensors records the transformers, torch and python versions and
  the seed. Reruns give bit-identical tensors; only the order of the __metadata__ keys in the
  header may change (the safetensors package keeps them in a hash map).

The weights are drawn with a larger scale than HF's 0.02 init (std 0.2, norm weights around 1)
so that logits differ visibly between tokens and positions and a wrong rotary convention, mask or
GQA head mapping cannot hide under the 1e-4 tolerance.
"""
import argparse
import json
import os
import platform

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

SEED = 20250411
VOCAB = 64
PROMPT_LEN = 6
CAUSAL_LEN = 12
# Tree: two children of the prompt, each with two children, one of those with a third level.
TREE_PARENTS = [-1, -1, 0, 0, 1, 1, 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "parity"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: 2 query heads per KV head
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    # Eager attention: the reference implementation, no fused-kernel numerics.
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))

    def logits_of(ids):
        ids = torch.tensor([ids], dtype=torch.long)
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        with torch.no_grad():
            return model(input_ids=ids, position_ids=pos, use_cache=False).logits.float()

    causal_ids = torch.randint(0, VOCAB, (CAUSAL_LEN,), generator=gen).tolist()
    prompt_ids = torch.randint(0, VOCAB, (PROMPT_LEN,), generator=gen).tolist()
    node_tokens = torch.randint(0, VOCAB, (len(TREE_PARENTS),), generator=gen).tolist()

    depths, node_logits = [], []
    for i, parent in enumerate(TREE_PARENTS):
        assert parent < i, "parents must come before their children"
        depths.append(1 if parent < 0 else depths[parent] + 1)
        branch, j = [], i
        while j >= 0:
            branch.append(node_tokens[j])
            j = TREE_PARENTS[j]
        node_logits.append(logits_of(prompt_ids + branch[::-1])[0, -1])

    causal_logits = logits_of(causal_ids)
    fixture = {
        "causal_input_ids": torch.tensor([causal_ids], dtype=torch.long),
        "causal_logits": causal_logits.contiguous(),
        "tree_prompt_ids": torch.tensor([prompt_ids], dtype=torch.long),
        "tree_prompt_logits": logits_of(prompt_ids).contiguous(),
        "tree_node_tokens": torch.tensor(node_tokens, dtype=torch.long),
        "tree_node_parents": torch.tensor(TREE_PARENTS, dtype=torch.long),
        "tree_node_depths": torch.tensor(depths, dtype=torch.long),
        "tree_node_logits": torch.stack(node_logits).contiguous(),
    }
    metadata = {
        "generator": "tools/make_parity_fixture.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "seed": str(SEED),
        "attn_implementation": "eager",
    }

    # Only config.json and model.safetensors: what a user's HF checkpoint directory minimally holds.
    model.save_pretrained(args.out, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(args.out, extra)
        if os.path.exists(path):
            os.remove(path)
    save_file(fixture, os.path.join(args.out, "fixture.safetensors"), metadata=metadata)

    spread = causal_logits.std(dim=-1).mean().item()
    print(json.dumps(metadata, indent=2))
    print(f"wrote {args.out}: logits std per row {spread:.3f}, tree nodes {len(TREE_PARENTS)}, depths {depths}")
    for f in sorted(os.listdir(args.out)):
        print(f"  {f}: {os.path.getsize(os.path.join(args.out, f))} bytes")


if __name__ == "__main__":
    main()
