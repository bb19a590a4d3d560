#!/usr/bin/env python3
"""Adds the search fixture to tests/data/lcrec/: a tiny dataset in atspeed's layout over the
fixture's 200-item index, the target (base + adapter_full merged) and a smaller random draft as HF
directories, and the reference answers of a cache-free constrained beam search computed from
transformers' float32 logits, so the C++ side can check its beam search (and the speculative one,
which must give the same beams) on a real LC-Rec prompt and tokenizer end to end.

Reads what tools/make_lcrec_fixture.py wrote (run that first; this script never touches its
outputs: index.json, prompts.json, tokenizer/, base/, adapter_full/, expected.safetensors):

    venv="$(bash tools/lcrec_fixture_venv.sh)"     # pinned transformers/peft/sentencepiece, no GPU
    "$venv/bin/python" tools/make_lcrec_fixture.py [--out tests/data/lcrec]
    "$venv/bin/python" tools/make_lcrec_search_fixture.py [--out tests/data/lcrec]

Deterministic: fixed seeds, PYTHONHASHSEED=0, torch on one thread (so no thread-count dependent
GEMM blocking), the model run one sequence at a time, JSON written in a fixed order; a second run
gives identical bytes. Outputs (about 0.97 MB on disk: target/ 0.55 MB, draft/ 0.30 MB,
expected_search.json 95 kB, data/ 13 kB; the tokenizer files are the same blobs as
merged_lora_only/'s, so git stores them once):

  data/               atspeed's dataset layout (data/dataset.h, data/lcrec.cpp):
      sequential_train.txt, sequential_valid.txt, sequential_test.txt
                      one line per user, "USER ITEM ITEM ...", single spaces, "\\n" after every
                      line (the last too); USER is the line number (1-based, 1..N_USERS in order: the
                      reader refuses anything else); ITEM is the index's item id PLUS ONE (the files
                      are 1-based like the real data, whose index keys are 0..N-1: the reader
                      subtracts 1 and refuses 0); a user with an empty list is the line "USER" alone.
                      N_USERS = 40 users, each with distinct items drawn uniformly from the 200;
                      train lengths 2..25 (users 1 and 4 (1-based) have 25 and 20 training items,
                      so their test histories hit the 20-item cap; several others do too); most users
                      have one valid and one test item; 4 have an empty valid list, 4 an empty test
                      list (one of them both), one has 2 valid items and one 2 test items.
      lcrec.LCRec-fixture.json   a byte copy of index.json (atspeed takes the single *.LCRec*.json).
  target/             the target model: tools/merge_lcrec_lora.py's merge() of base/ + adapter_full/
                      (set_seed(42), resize, PeftModel.from_pretrained, merge_and_unload, float32,
                      cpu; the adapter's modules_to_save rows replace the regenerated ones), i.e.
                      config.json (V = 1461, _name_or_path "base"), generation_config.json,
                      model.safetensors, and the tokenizer files (tokenizer/ reloaded and saved:
                      tokenizer.model, tokenizer_config.json, special_tokens_map.json,
                      added_tokens.json). Its logits on expected.safetensors' input_ids are
                      expected.safetensors' full_logits (checked here).
  draft/              a smaller random LlamaForCausalLM on the same tokenizer: V = 1461, hidden 16,
                      1 layer, 2 heads, 1 KV head, intermediate 32, untied, rms eps 1e-6, weights
                      N(0, 0.2), norms 1 + N(0, 0.1) (seed DRAFT_SEED): config.json,
                      generation_config.json, model.safetensors, the tokenizer files.
  expected_search.json  {"generator", versions, "model": "target", "template", "max_history",
                      "levels", "ks", "k20_users", "score_dtype", "tie_break", "min_gap",
                      "searches": [...]}, one search a line. Test samples as atspeed's
                      make_test_samples builds them (SPEC 1.5): every user with a non-empty test
                      list, history = train + valid cut to its LAST 20 items; every such user for
                      K = 1 and K = 5, the first K20_USERS of them for K = 20. A search:
        {"user": 0-based user (line index), "history": [0-based item ids], "targets": [test items],
         "prompt_ids": tokenizer(template with {H} = the item strings joined by ", ")["input_ids"]
                       (BOS added, no EOS; LlamaTokenizer.from_pretrained(tokenizer/, legacy=True)),
         "k": K,
         "beams": [{"codes": [c1, c2, c3, c4], "items": [the item with these codes], "score": S}]
                  the final list, best first,
         "step_gaps": [g1, g2, g3, g4], "boundary_gap": g4, "min_gap": min of the non-null g,
         "order_gap": min over adjacent final beams of score[i] - score[i+1] (null for one beam)}
        where g_j = score of the K-th kept candidate - score of the best dropped candidate at step j
        (>= 0; null when step j had <= K candidates, so nothing was dropped). The top level's
        "min_gap" is the smallest over all searches. A C++ result may differ from these beams
        only where a gap is below the float-noise tolerance (SPEC 9.2 near ties).
        The index's trie is sparse below level 2 (40 level-1 codes with 1..11 children each; 198 of
        the 199 two-code prefixes have one child, every three-code prefix one), so the choices
        are made at steps 1 and 2 (once at step 3): step 4 never drops a candidate and
        boundary_gap is null in every search. As generated: 36 test users (10 with a capped
        history), 82 searches (36 at K = 1, 36 at K = 5, 10 at K = 20), smallest min_gap 5.9e-4
        (K = 5, step 1), smallest order_gap 1.3e-3: no pair within SPEC 9.2's 1e-4.
      The search (SPEC 2.1, strict trie, no KV cache): the trie holds every item's 4 codes; step 1
      starts from one beam (score 0) = the prompt; at step j every beam's WHOLE sequence (prompt +
      its j - 1 code tokens) is run through the model alone (batch 1, no padding, use_cache=False,
      eager attention), its last row's logits taken in float32, log_softmax over the full
      vocabulary (V = 1461), every token outside the trie children of the beam's prefix dropped;
      cand = beam score + logprob, added in float32; the new beams are the top K of all
      (beam, token) candidates (all of them when there are fewer) by score descending, exact ties
      by the code tuple ascending (numeric code order, not token-id order, which sorts "<a_10>"
      before "<a_2>"); after 4 steps the list is sorted the same way. Scores are float32 values
      written as the exactly equal JSON double.
"""
import argparse
import json
import os
import platform
import random
import shutil
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_lcrec_lora import merge  # noqa: E402

DATA_SEED = 20261205     # users and their sequences (random.Random)
DRAFT_SEED = 20261206    # draft weights (torch.Generator)
RESIZE_SEED = 42         # merge(): set_seed before resize (the rows are replaced by the adapter's)
N_USERS = 40
MIN_TRAIN, MAX_TRAIN = 2, 25
MAX_HISTORY = 20
KS = (1, 5, 20)
K20_USERS = 10
LEVELS = "abcd"
INDEX_NAME = "lcrec.LCRec-fixture.json"
SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------------------- data
def make_users(rng, n_items):
    """[(train, valid, test)] per user, 0-based item ids, distinct within a user."""
    train_len = [rng.randint(MIN_TRAIN, MAX_TRAIN) for _ in range(N_USERS)]
    train_len[0], train_len[1], train_len[2], train_len[3] = MAX_TRAIN, MIN_TRAIN, 19, 20
    # (valid, test) list lengths: mostly (1, 1); a few empty ones and two 2-item lists, placed by
    # the rng among users 4.. (users 0..3 keep (1, 1): their histories are the boundary cases).
    shapes = [(0, 1)] * 3 + [(1, 0)] * 3 + [(0, 0)] + [(2, 1), (1, 2)]
    shapes += [(1, 1)] * (N_USERS - 4 - len(shapes))
    rng.shuffle(shapes)
    shapes = [(1, 1)] * 4 + shapes
    users = []
    for n, (nv, nt) in zip(train_len, shapes):
        seq = rng.sample(range(n_items), n + nv + nt)
        users.append((seq[:n], seq[n:n + nv], seq[n + nv:]))
    return users


def write_split(path, lists):
    with open(path, "w", newline="\n") as f:
        for u, items in enumerate(lists):
            f.write(" ".join([str(u + 1)] + [str(i + 1) for i in items]) + "\n")


def read_split(path, n_items):
    """data/lcrec.cpp's read_split_file, for the self-check."""
    lists = []
    with open(path, "rb") as f:
        text = f.read().decode()
    assert text.endswith("\n")
    for line_no, line in enumerate(text[:-1].split("\n"), 1):
        fields = line.split(" ")
        assert all(x.isdigit() for x in fields) and int(fields[0]) == line_no, line
        items = [int(x) for x in fields[1:]]
        assert all(1 <= v <= n_items for v in items)
        lists.append([v - 1 for v in items])
    return lists


def test_samples(train, valid, test):
    """data/samples.cpp's make_test_samples: (user, history, targets)."""
    out = []
    for u in range(len(train)):
        if not test[u]:
            continue
        h = train[u] + valid[u]
        out.append((u, h[-MAX_HISTORY:], test[u]))
    return out


# --------------------------------------------------------------------------------------- models
def draft_config(vocab):
    return LlamaConfig(
        vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu",
        attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def load(path):
    return LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                            attn_implementation="eager").eval()


# --------------------------------------------------------------------------------------- search
class Scorer:
    """Full-vocabulary log_softmax after the last token of a whole sequence (batch 1, no cache),
    memoized by the sequence (K = 1, 5 and 20 share their first beams)."""

    def __init__(self, model):
        self.model, self.memo, self.calls = model, {}, 0

    def __call__(self, ids):
        key = tuple(ids)
        if key not in self.memo:
            with torch.no_grad():
                logits = self.model(input_ids=torch.tensor([ids], dtype=torch.long),
                                    use_cache=False).logits
            self.memo[key] = torch.log_softmax(logits[0, -1].float(), dim=-1)
            self.calls += 1
        return self.memo[key]


def beam_search(score_fn, prompt_ids, k, children, code_token):
    """Returns (final [(codes, score f32 tensor)], per-step gaps)."""
    beams = [((), torch.tensor(0.0, dtype=torch.float32))]
    gaps = []
    for level in range(len(LEVELS)):
        cands = []
        for codes, s in beams:
            ls = score_fn(prompt_ids + [code_token[(lv, c)] for lv, c in enumerate(codes)])
            for c in children[codes]:
                cands.append((codes + (c,), s + ls[code_token[(level, c)]]))  # float32 add
        cands.sort(key=lambda x: (-x[1].item(), x[0]))
        gaps.append(cands[k - 1][1].item() - cands[k][1].item() if len(cands) > k else None)
        beams = cands[:k]
    return beams, gaps


# ----------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "lcrec"))
    args = ap.parse_args()
    out = args.out
    for need in ("index.json", "prompts.json", "tokenizer", "base", "adapter_full",
                 "expected.safetensors"):
        assert os.path.exists(os.path.join(out, need)), \
            f"{out}/{need} missing: run tools/make_lcrec_fixture.py first"
    for sub in ("data", "target", "draft"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    with open(os.path.join(out, "prompts.json")) as f:
        template = json.load(f)["template"]
    n_items = len(index)
    assert sorted(map(int, index)) == list(range(n_items))
    tok_dir = os.path.join(out, "tokenizer")
    tok = LlamaTokenizer.from_pretrained(tok_dir, legacy=True)
    vocab = len(tok)

    # 1. data/
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir)
    users = make_users(random.Random(DATA_SEED), n_items)
    for i, split in enumerate(SPLITS):
        write_split(os.path.join(data_dir, f"sequential_{split}.txt"), [u[i] for u in users])
    shutil.copyfile(os.path.join(out, "index.json"), os.path.join(data_dir, INDEX_NAME))
    train, valid, test = (read_split(os.path.join(data_dir, f"sequential_{s}.txt"), n_items)
                          for s in SPLITS)
    assert [(t, v, te) for t, v, te in zip(train, valid, test)] == users
    samples = test_samples(train, valid, test)

    # 2. target/ and draft/
    target_dir = os.path.join(out, "target")
    merge(os.path.join(out, "base"), os.path.join(out, "adapter_full"), target_dir,
          tokenizer_dir=tok_dir, seed=RESIZE_SEED, dtype="float32", device="cpu",
          name_or_path="base")
    target = load(target_dir)
    with safe_open(os.path.join(out, "expected.safetensors"), "pt") as f:
        input_ids, full_logits = f.get_tensor("input_ids"), f.get_tensor("full_logits")
    with torch.no_grad():
        lg = target(input_ids=input_ids, use_cache=False).logits.float()
    full_diff = (lg - full_logits).abs().max().item()
    assert full_diff < 1e-5 * max(1.0, full_logits.abs().max().item()), full_diff

    draft_dir = os.path.join(out, "draft")
    gen = torch.Generator().manual_seed(DRAFT_SEED)
    draft = LlamaForCausalLM(draft_config(vocab)).to(torch.float32)
    with torch.no_grad():
        for name, p in draft.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    draft.save_pretrained(draft_dir, safe_serialization=True)
    tok.save_pretrained(draft_dir)
    for fn in os.listdir(target_dir):  # same tokenizer files in both
        if fn not in ("config.json", "generation_config.json", "model.safetensors"):
            with open(os.path.join(target_dir, fn), "rb") as a, \
                    open(os.path.join(draft_dir, fn), "rb") as b:
                assert a.read() == b.read(), fn
    with torch.no_grad():
        d = load(draft_dir)(input_ids=input_ids, use_cache=False).logits
    assert d.shape == full_logits.shape

    # 3. expected_search.json
    codes_of = {int(i): tuple(int(t[3:-1]) for t in toks) for i, toks in index.items()}
    item_of = {c: i for i, c in codes_of.items()}
    assert len(item_of) == n_items
    children = {}
    for c in codes_of.values():
        for lv in range(len(LEVELS)):
            children.setdefault(c[:lv], set()).add(c[lv])
    children = {p: sorted(s) for p, s in children.items()}
    code_token = {}
    for toks in index.values():
        for lv, t in enumerate(toks):
            code_token[(lv, int(t[3:-1]))] = tok.convert_tokens_to_ids(t)
    assert min(code_token.values()) >= tok.vocab_size

    scorer = Scorer(target)
    searches = []
    for k in KS:
        for n, (u, history, targets) in enumerate(samples):
            if k == 20 and n >= K20_USERS:
                break
            text = template.replace("{H}", ", ".join("".join(index[str(i)]) for i in history))
            prompt_ids = tok(text)["input_ids"]
            beams, gaps = beam_search(scorer, prompt_ids, k, children, code_token)
            scores = [s.item() for _, s in beams]
            real = [g for g in gaps if g is not None]
            searches.append({
                "user": u, "history": history, "targets": targets, "prompt_ids": prompt_ids,
                "k": k,
                "beams": [{"codes": list(c), "items": [item_of[c]], "score": s}
                          for (c, _), s in zip(beams, scores)],
                "step_gaps": gaps, "boundary_gap": gaps[-1],
                "min_gap": min(real) if real else None,
                "order_gap": min(a - b for a, b in zip(scores, scores[1:])) if len(scores) > 1
                else None,
            })
    all_gaps = [s["min_gap"] for s in searches if s["min_gap"] is not None]
    head = {
        "generator": "tools/make_lcrec_search_fixture.py",
        "transformers_version": transformers.__version__, "peft_version": peft.__version__,
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "model": "target", "attn_implementation": "eager", "template": template,
        "max_history": MAX_HISTORY, "levels": len(LEVELS), "ks": list(KS), "k20_users": K20_USERS,
        "score_dtype": "float32", "tie_break": "score descending, then code tuple ascending",
        "min_gap": min(all_gaps),
    }
    with open(os.path.join(out, "expected_search.json"), "w") as f:
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "searches": [\n')
        f.write(",\n".join(json.dumps(s, separators=(",", ":")) for s in searches))
        f.write("\n]}\n")

    # report
    n_test = len(samples)
    capped = sum(len(train[u]) + len(valid[u]) > MAX_HISTORY for u, _, _ in samples)
    print(f"users {N_USERS}, test users {n_test} ({capped} at the {MAX_HISTORY}-item cap), K=20 "
          f"users {min(K20_USERS, n_test)}, searches {len(searches)}, forward passes "
          f"{scorer.calls}; target vs full_logits max |diff| {full_diff:.3g}")
    for k in KS:
        ks = [s for s in searches if s["k"] == k]
        mg = [s["min_gap"] for s in ks if s["min_gap"] is not None]
        bg = [s["boundary_gap"] for s in ks if s["boundary_gap"] is not None]
        og = [s["order_gap"] for s in ks if s["order_gap"] is not None]
        print(f"  K={k}: {len(ks)} searches, min_gap min {min(mg) if mg else None}, "
              f"boundary_gap min {min(bg) if bg else None} ({len(bg)} non-null), "
              f"order_gap min {min(og) if og else None}, "
              f"hits {sum(any(b['items'][0] in s['targets'] for b in s['beams']) for s in ks)}")
    total = 0
    for sub in ("data", "target", "draft", "expected_search.json"):
        p = os.path.join(out, sub)
        files = [p] if os.path.isfile(p) else [os.path.join(p, fn) for fn in sorted(os.listdir(p))]
        for fp in files:
            size = os.path.getsize(fp)
            total += size
            print(f"  {os.path.relpath(fp, out)}: {size} bytes")
    print(f"total added {total} bytes")


if __name__ == "__main__":
    main()
