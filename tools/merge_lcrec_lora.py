#!/usr/bin/env python3
"""Merges an LC-Rec LoRA adapter into its base LLaMA the way the LC-Rec / AtSpeed reference loads it,
and writes a plain HuggingFace checkpoint directory (config.json, model*.safetensors, tokenizer files)
that `atspeed convert` can read.

Run by a user whose adapter lacks the resized embedding and lm_head rows (the AtSpeed adapters):

    venv="$(bash tools/lcrec_fixture_venv.sh)"   # pinned transformers 4.41.0 + peft 0.11.1
    "$venv/bin/python" tools/merge_lcrec_lora.py --base BASE_DIR --adapter ADAPTER_DIR \\
        [--tokenizer DIR (default: ADAPTER_DIR)] --out OUT_DIR \\
        [--seed 42] [--dtype float32|float16|bfloat16] [--device cpu|cuda]

Why it exists. LC-Rec adds one token per item code ("<a_47>", ...) to the LLaMA tokenizer and calls
`model.resize_token_embeddings(len(tokenizer))`, which appends new rows to embed_tokens and lm_head
drawn from the global torch RNG (transformers 4.41 builds a new nn.Embedding, then a new nn.Linear,
on the old weight's device and dtype; each draws its constructor's init and then `_init_weights`'
normal(0, initializer_range) over the whole new matrix, and the old rows are copied back over the
first rows). An adapter trained with
modules_to_save=["embed_tokens", "lm_head"] carries those rows; one without (LoRA on the linear
layers only) does not, and the reference inference code regenerates them at load time:

    tokenizer = LlamaTokenizer.from_pretrained(ckpt, legacy=True)
    model = LlamaForCausalLM.from_pretrained(base, torch_dtype=torch.float16, load_in_8bit=True, ...)
    set_seed(42)   # "a mysterious bug in transformers, must set_seed(42) here"
    model.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(model, ckpt)

so the code-token rows the model was trained and evaluated with exist nowhere on disk: they are a
function of the seed, the RNG that drew them and the matrix shape. This script replays that order
(tokenizer, base in --dtype, set_seed(seed), resize to len(tokenizer), PeftModel.from_pretrained,
merge_and_unload) and saves the result with save_pretrained(safe_serialization=True) (sharded as
transformers does, 5 GB shards) plus the tokenizer, so the rows become an ordinary checkpoint.

What it does not reproduce bit for bit. The reference runs the target on a GPU, in fp16 with the
base linear layers quantized to 8 bit (bitsandbytes LLM.int8), and never merges: the LoRA deltas are
added at run time on top of the int8 matmuls. A merged fp16/bf16/fp32 checkpoint therefore gives
logits close to, not identical with, the reference's. Worse for the new rows: the resized matrices
are created on the model's device, so the reference drew them with the CUDA generator in fp16,
while this script on --device cpu draws them with the CPU generator in --dtype. The two generators
give different numbers for the same seed, so the code-token rows differ entirely (same distribution,
other values). Use --device cuda --dtype float16 on a GPU machine to draw them the way the reference
did (same torch RNG stream as long as the torch version's CUDA normal_ kernel agrees).

An adapter that does carry embed_tokens/lm_head (modules_to_save) does not need this script (its
rows override the regenerated ones), but merging it here works too and gives the same checkpoint.

Outputs in OUT_DIR: config.json (vocab_size = len(tokenizer)), generation_config.json,
model.safetensors or model-0000i-of-0000n.safetensors + model.safetensors.index.json, and the
tokenizer files (tokenizer.model, tokenizer_config.json, special_tokens_map.json, added_tokens.json).
"""
import argparse
import json
import os
import sys

# No hub look-ups: every path is local (peft would otherwise ask the hub about the base model).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def merge(base, adapter, out, tokenizer_dir=None, seed=42, dtype="float32", device="cpu",
          name_or_path=None, log=print):
    """Replays the reference load order and writes the merged checkpoint to `out`.
    Returns the merged model (on `device`, eval mode) and the tokenizer."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM, LlamaTokenizer, set_seed

    tokenizer_dir = tokenizer_dir or adapter
    tokenizer = LlamaTokenizer.from_pretrained(tokenizer_dir, legacy=True)
    model = LlamaForCausalLM.from_pretrained(base, torch_dtype=DTYPES[dtype])
    model.to(device)
    base_vocab = model.get_input_embeddings().weight.shape[0]
    if base_vocab >= len(tokenizer):
        log(f"[merge] note: the base already has {base_vocab} embedding rows >= len(tokenizer) = "
            f"{len(tokenizer)}: nothing is regenerated")

    with open(os.path.join(adapter, "adapter_config.json")) as f:
        adapter_config = json.load(f)
    saved = adapter_config.get("modules_to_save") or []
    if any(m in saved for m in ("embed_tokens", "lm_head")):
        log(f"[merge] note: the adapter saves {saved}: its rows replace the regenerated ones")

    set_seed(seed)
    model.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(model, adapter)
    merged = model.merge_and_unload().eval()
    if name_or_path is not None:
        merged.config._name_or_path = name_or_path

    os.makedirs(out, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    log(f"[merge] {base} + {adapter} (seed {seed}, {dtype}, {device}): vocab {base_vocab} -> "
        f"{len(tokenizer)}, wrote {out}")
    return merged, tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the base LLaMA (HF directory)")
    ap.add_argument("--adapter", required=True, help="the peft LoRA adapter directory")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --adapter)")
    ap.add_argument("--out", required=True, help="output HF checkpoint directory")
    ap.add_argument("--seed", type=int, default=42, help="set_seed() before the resize (reference: 42)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    ap.add_argument("--device", default="cpu",
                    help="where the resize draws the new rows: cpu, or cuda as the reference did")
    args = ap.parse_args()
    merge(args.base, args.adapter, args.out, tokenizer_dir=args.tokenizer, seed=args.seed,
          dtype=args.dtype, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
