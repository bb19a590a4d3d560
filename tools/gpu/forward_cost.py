#!/usr/bin/env python3
"""Forward time against new tokens for the paper's model shapes, through HF transformers' LLaMA.

A reference point for atspeed's cost model until `atspeed bench forward` (issue 19) measures its own
forward at these shapes: the LC-Rec target (LLaMA-7B, configs/model/target_llama7b.yaml) and the
paper's draft (LLaMA-68M, draft_llama68m.yaml) in bf16, random weights built on the device, a
cached context of --context tokens, then one forward of n new tokens (causal). Each point is the
median of --reps CUDA-event-timed forwards after warm-up, with the interquartile range.

    python3 tools/gpu/forward_cost.py --json out.json [--models target_llama7b draft_llama68m]

The vocabulary is LLaMA's 32,000 plus LC-Rec's 4 x 256 code tokens (33,024).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import yaml
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hf_config(name, vocab):
    with open(os.path.join(ROOT, "configs", "model", f"{name}.yaml")) as f:
        c = yaml.safe_load(f)
    return LlamaConfig(vocab_size=vocab, hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                       num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
                       num_key_value_heads=c["num_key_value_heads"], max_position_embeddings=4096,
                       rope_theta=c["rope_theta"], rms_norm_eps=c["rms_norm_eps"],
                       tie_word_embeddings=c["tie_word_embeddings"])


def measure(name, vocab, context, ns, reps, dtype):
    cfg = hf_config(name, vocab)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params / 1e6:.0f} M parameters, built in {time.time() - t0:.1f} s", flush=True)
    ctx = torch.randint(0, vocab, (1, context), device="cuda")
    points = []
    with torch.inference_mode():
        cache = DynamicCache()
        model(ctx, past_key_values=cache, use_cache=True)
        for n in ns:
            new = torch.randint(0, vocab, (1, n), device="cuda")
            times = []
            for r in range(reps + 3):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(new, past_key_values=cache, use_cache=True)
                end.record()
                end.synchronize()
                cache.crop(context)
                if r >= 3:
                    times.append(start.elapsed_time(end))
            q = statistics.quantiles(times, n=4)
            points.append({"n": n, "median_ms": statistics.median(times), "q1_ms": q[0], "q3_ms": q[2]})
            print(f"  n={n:4d}  {points[-1]['median_ms']:8.3f} ms  (IQR {q[0]:.3f}-{q[2]:.3f})", flush=True)
    del model, cache
    torch.cuda.empty_cache()
    return {"model": name, "parameters": params, "context": context, "dtype": str(dtype).replace("torch.", ""),
            "points": points}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["target_llama7b", "draft_llama68m"])
    ap.add_argument("--vocab", type=int, default=32000 + 4 * 256)
    ap.add_argument("--context", type=int, default=160, help="cached prompt tokens (an LC-Rec prompt: ~100-200)")
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 5, 20, 40, 80, 120, 200, 400])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("forward_cost.py: no CUDA device")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "results": [measure(m, a.vocab, a.context, a.ns, a.reps, torch.bfloat16) for m in a.models]}
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)
    t, d = out["results"][0]["points"], out["results"][-1]["points"]
    if len(out["results"]) > 1:
        print("cost ratio draft/target at n=1: %.3f" % (d[0]["median_ms"] / t[0]["median_ms"]))


if __name__ == "__main__":
    main()
