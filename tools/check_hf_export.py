#!/usr/bin/env python3
"""Checks a HuggingFace LLaMA directory (the C++ side's HF export of a converted checkpoint, or one
that tools/merge_lcrec_lora.py wrote) against the LC-Rec fixture that tools/make_lcrec_fixture.py
made: transformers must load it, its tokenizer must reproduce every tokenized case, and its logits
must match the fixture's.

    venv="$(bash tools/lcrec_fixture_venv.sh)"     # pinned transformers 4.41.0 (the reference's)
    "$venv/bin/python" tools/check_hf_export.py EXPORT_DIR --fixture tests/data/lcrec \\
        [--expected-key full_logits] [--atol 1e-4]

EXPORT_DIR is loaded with LlamaForCausalLM.from_pretrained (float32, eager attention) and
LlamaTokenizer.from_pretrained(EXPORT_DIR, legacy=True), the way the reference loads its tokenizer.
Checks, in order:
  1. len(tokenizer) equals the fixture's (prompts.json "len_tokenizer"), and the model's vocab
     (config.json vocab_size, the embedding rows) equals the expected logits' last dimension;
  2. tokenizer(text)["input_ids"] equals "ids" for every case of prompts.json, id for id (the
     first few mismatches are printed with both token lists);
  3. the logits on expected.safetensors' input_ids (base_input_ids for --expected-key base_logits)
     match expected.safetensors[--expected-key] to --atol (max |diff| printed).
Which key fits which directory: full_logits for base merged with adapter_full (or adapter_full_bin);
lora_only_logits for base + adapter_lora_only merged with set_seed(42) (merged_lora_only/);
base_logits for base/ (it has no tokenizer: pass --skip-tokenizer).
Exit code 0 when every check passes, 1 otherwise.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402


def check_tokenizer(tok, prompts, show=3):
    failures = []
    for i, case in enumerate(prompts["cases"]):
        ids = tok(case["text"])["input_ids"]
        if ids != case["ids"]:
            failures.append((i, case, ids))
    for i, case, ids in failures[:show]:
        label = case.get("name", f"history {case.get('history')}")
        want = case["ids"]
        at = next((k for k, (x, y) in enumerate(zip(want, ids)) if x != y), min(len(want), len(ids)))
        print(f"  case {i} ({case['kind']}, {label}): text {case['text'][:80]!r}")
        print(f"    first difference at position {at} (lengths {len(want)} expected, {len(ids)} got)")
        print(f"    expected ids {want[max(0, at - 3):at + 6]}")
        print(f"    got      ids {ids[max(0, at - 3):at + 6]} = "
              f"{tok.convert_ids_to_tokens(ids[max(0, at - 3):at + 6])}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("export_dir")
    ap.add_argument("--fixture", default=os.path.join(root, "tests", "data", "lcrec"))
    ap.add_argument("--expected-key", default="full_logits",
                    choices=["full_logits", "lora_only_logits", "base_logits"])
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--skip-tokenizer", action="store_true",
                    help="no tokenizer checks (for a directory without tokenizer files)")
    args = ap.parse_args()

    from transformers import LlamaForCausalLM, LlamaTokenizer

    ok = True
    with open(os.path.join(args.fixture, "prompts.json"), encoding="utf-8") as f:
        prompts = json.load(f)
    with safe_open(os.path.join(args.fixture, "expected.safetensors"), "pt") as f:
        ids_key = "base_input_ids" if args.expected_key == "base_logits" else "input_ids"
        input_ids = f.get_tensor(ids_key)
        expected = f.get_tensor(args.expected_key)

    model = LlamaForCausalLM.from_pretrained(args.export_dir, torch_dtype=torch.float32,
                                             attn_implementation="eager").eval()
    rows = model.get_input_embeddings().weight.shape[0]
    if model.config.vocab_size != expected.shape[-1] or rows != expected.shape[-1]:
        print(f"FAIL vocab: config {model.config.vocab_size}, embedding rows {rows}, expected "
              f"{expected.shape[-1]} ({args.expected_key})")
        ok = False

    if not args.skip_tokenizer:
        tok = LlamaTokenizer.from_pretrained(args.export_dir, legacy=True)
        if len(tok) != prompts["len_tokenizer"]:
            print(f"FAIL len(tokenizer) {len(tok)} != {prompts['len_tokenizer']}")
            ok = False
        failures = check_tokenizer(tok, prompts)
        n = len(prompts["cases"])
        if failures:
            print(f"FAIL tokenizer: {len(failures)} of {n} cases differ")
            ok = False
        else:
            print(f"ok   tokenizer: {n} of {n} cases id for id")

    if ok or rows == expected.shape[-1]:
        with torch.no_grad():
            logits = model(input_ids=input_ids, use_cache=False).logits.float()
        if logits.shape != expected.shape:
            print(f"FAIL logits shape {list(logits.shape)} != {list(expected.shape)}")
            ok = False
        else:
            diff = (logits - expected).abs().max().item()
            good = diff <= args.atol
            print(f"{'ok  ' if good else 'FAIL'} logits vs {args.expected_key}: max |diff| {diff:.3e} "
                  f"(atol {args.atol:g}, T {input_ids.shape[1]}, V {expected.shape[-1]})")
            ok = ok and good
    print("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
