#!/usr/bin/env python3
"""Regenerates tests/data/lcrec/: a small LC-Rec world (item index, a LLaMA-style SentencePiece
tokenizer with the item-code tokens added the way LC-Rec adds them, tokenized prompts, a tiny random
LLaMA with peft LoRA adapters) and what transformers 4.41.0 / peft 0.11.1 compute on it, so the C++
side can check its tokenizer (id for id), its safetensors/.bin adapter reading and its LoRA merge.

Run by a developer when the fixture must change (not by CI; the output is committed):

    venv="$(bash tools/lcrec_fixture_venv.sh)"     # pinned transformers/peft/sentencepiece, no GPU
    "$venv/bin/python" tools/make_lcrec_fixture.py [--out tests/data/lcrec]
    "$venv/bin/python" tools/check_hf_export.py tests/data/lcrec/merged_lora_only \\
        --fixture tests/data/lcrec --expected-key lora_only_logits        # self-check, exit 0
    "$venv/bin/python" tools/make_lcrec_search_fixture.py [--out tests/data/lcrec]

The last step (a second script, reading this one's outputs and leaving them untouched) adds the
search fixture: data/ (a 40-user dataset in atspeed's sequential_*.txt layout with the index as
data/lcrec.LCRec-fixture.json), target/ (base + adapter_full merged, float32, HF directory with the
tokenizer), draft/ (a smaller random LLaMA on the same tokenizer) and expected_search.json (the
target's constrained beam search, K = 1, 5, 20, from transformers' float32 logits); its docstring
describes them. Rerun it whenever this script's outputs change.

Everything is deterministic (fixed seeds, SentencePiece trained with num_threads=1, its model
written through model_writer so no temp path lands in it, PYTHONHASHSEED fixed; a second run
gives identical bytes). Outputs (float32 weights; about 3.4 MB on disk, about 2.5 MB in git, where
the tokenizer files repeated in five directories are one blob each and JSON compresses well):

  index.json          LC-Rec item index {"0": ["<a_47>", "<b_103>", "<c_234>", "<d_99>"], ...}:
                      N_ITEMS items "0".."N-1", 4 levels a..d of a 256-code codebook, distinct
                      tuples; level a uses only A_CODES distinct codes, b..d uniform in 0..255.
  tokenizer/          what LC-Rec's finetune saves: LlamaTokenizer(vocab_file, legacy=True,
                      padding_side="right", model_max_length=2048), pad_token_id = 0 (so pad is
                      "<unk>"), add_tokens(sorted(set(code tokens))) -- sorted as strings, so
                      "<a_10>" precedes "<a_2>"; ids SP_VOCAB.. in that order -- then save_pretrained:
      tokenizer.model           the SentencePiece BPE model (LLaMA's trainer settings, see SP_ARGS;
                                byte_fallback, split_digits, add_dummy_prefix, identity normalization)
      tokenizer_config.json     incl. added_tokens_decoder (every added token: lstrip/rstrip false)
      special_tokens_map.json   bos <s>, eos </s>, unk <unk>, pad <unk> (pad a plain string here;
                                the directories below, saved from the reloaded tokenizer, write
                                pad as a full AddedToken dict, which is the only difference)
      added_tokens.json         {"<a_10>": 1000, ...}
  prompts.json        {"transformers_version", "sentencepiece_version", "template", "sp_vocab_size",
                      "len_tokenizer", "cases": [...]}, one case a line. Every case's "ids" is
                      `tokenizer(text)["input_ids"]` of the reloaded tokenizer
                      (LlamaTokenizer.from_pretrained(tokenizer/, legacy=True)): BOS added, no EOS.
                      kind "prompt": {"kind", "history": [item ids], "text", "ids"}; text is the
                        template with {H} = the history's item strings (4 code tokens glued)
                        joined with ", "; history lengths 1, 2, 3..8, 9..19 and 20 (the cap).
                      kind "text": {"kind", "name", "text", "ids"}: digits, non-ASCII, whitespace
                        runs, code tokens glued to words, literal <s> </s> <unk>, "", U+2581, a
                        training text (prompt + item string + "</s>"), malformed code tokens, ...
  base/               LlamaForCausalLM, vocab = the SentencePiece vocab (SP_VOCAB, not resized),
                      hidden 32, 2 layers, 4 heads, 2 KV heads, intermediate 64, untied, rms eps 1e-6,
                      weights N(0, 0.2), norms 1 + N(0, 0.1): config.json + model.safetensors.
  adapter_full/       LoRA r=8, alpha=16, dropout 0, on q,k,v,o,gate,up,down, with
                      modules_to_save=["embed_tokens", "lm_head"] (the LC-Rec finetune flow: base,
                      resize_token_embeddings(len(tokenizer)), get_peft_model), every lora_A/lora_B
                      and both saved modules random: adapter_config.json + adapter_model.safetensors
                      + the tokenizer files.
  adapter_full_bin/   the same adapter saved with safe_serialization=False (adapter_model.bin, a
                      torch.save zip pickle) + the tokenizer files.
  adapter_lora_only/  LoRA as above but no modules_to_save (saved with save_embedding_layers=False):
                      the resized embedding/lm_head rows are not in it (AtSpeed's adapters) +
                      the tokenizer files.
  merged_lora_only/   tools/merge_lcrec_lora.py on base + adapter_lora_only (seed 42, float32, cpu):
                      config.json (vocab len(tokenizer)), generation_config.json, model.safetensors,
                      the tokenizer files.
  expected.safetensors  written by this script with sorted keys (so bit-identical on reruns):
    input_ids          int64 [1, T]       a prompt with 3 history items (T = 64)
    base_input_ids     int64 [1, Tb]      a prompt without code tokens (ids < SP_VOCAB)
    base_logits        f32 [1, Tb, SP_VOCAB]  base on base_input_ids
    full_logits        f32 [1, T, V]      V = len(tokenizer): base, resize, PeftModel.from_pretrained(
                                          adapter_full), merge_and_unload() (the unmerged PeftModel
                                          agrees to 1e-5 x max|logit|, ~1e-5 absolute: float32
                                          rounding of x(W+sBA) vs xW+s(xA)B; the .bin adapter gives
                                          identical logits)
    lora_only_logits   f32 [1, T, V]      the reference order for adapter_lora_only: set_seed(42),
                                          resize, PeftModel.from_pretrained, merge_and_unload (equal
                                          to merged_lora_only/ reloaded)
    __metadata__       generator, versions (transformers, peft, torch, sentencepiece, python), seeds.

The tokenizer rule the cases pin down (transformers 4.41 slow LlamaTokenizer, legacy=True; the
script asserts that this reimplementation reproduces every case): cut the text at every occurrence of
an added token -- the code tokens and <unk> <s> </s>, matched anywhere, even glued to words, with no
whitespace stripped on either side -- and emit each as its id; encode every non-empty piece of text
between them on its own with SentencePiece (so each starts with the dummy-prefix "\u2581", e.g.
"abc<a_1>def" -> "\u2581a" "b" "c" <a_1> "\u2581de" "f", and " " alone -> "\u2581" "\u2581");
put BOS in front, no EOS. A literal "<s>" in the text is BOS (id 1), "</s>" EOS, "<unk>" id 0.

All models run with attn_implementation="eager" here; tools/check_hf_export.py does the same.
Key names peft 0.11.1 writes (both adapter formats): base_model.model.model.layers.{i}.self_attn.
{q,k,v,o}_proj.lora_{A,B}.weight, base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_
{A,B}.weight (lora_A [r, in], lora_B [out, r], the adapter name "default" stripped), and for
modules_to_save base_model.model.model.embed_tokens.weight and base_model.model.lm_head.weight
(full [V, hidden] matrices, the ".modules_to_save.default" stripped). The merge is
W + (lora_alpha / r) * B @ A. adapter_config.json holds, among peft's other fields: "peft_type":
"LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules"
(a list in arbitrary order: peft keeps a set), "modules_to_save" (["embed_tokens", "lm_head"] or
null), "bias": "none", "fan_in_fan_out": false, "use_rslora": false (true would scale by
alpha / sqrt(r)), "use_dora": false, "layers_to_transform": null, "rank_pattern": {},
"alpha_pattern": {}, "inference_mode": true, "base_model_name_or_path": "base" (set by this script).
"""
import argparse
import json
import os
import platform
import random
import shutil
import struct
import sys
import tempfile

# peft keeps target_modules in a set and writes it to adapter_config.json in iteration order, which
# follows str hashing: run under a fixed PYTHONHASHSEED so reruns write the same bytes.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import io  # noqa: E402

import peft  # noqa: E402
import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, TaskType, get_peft_model  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer, set_seed  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from merge_lcrec_lora import merge  # noqa: E402

SEED = 20261201          # index, corpus, histories (random.Random)
WEIGHT_SEED = 20261202   # base weights (torch.Generator)
LORA_SEED = 20261203     # adapter weights (torch.Generator)
RESIZE_SEED = 42         # set_seed before resize_token_embeddings, as the reference
N_ITEMS = 200
A_CODES = 40
CODEBOOK = 256
LEVELS = "abcd"
SP_VOCAB = 1000
MAX_HISTORY = 20
TEMPLATE = ("Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\nThe user has interacted with items {H} in "
            "chronological order. Can you predict the next possible item that the user may expect?"
            "\n\n### Response:")
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The trainer_spec of LLaMA's tokenizer.model, scaled down (vocab, threads, corpus sizes).
SP_ARGS = dict(
    model_type="bpe", vocab_size=SP_VOCAB, character_coverage=0.99995, byte_fallback=True,
    split_digits=True, split_by_unicode_script=True, split_by_number=True, split_by_whitespace=True,
    treat_whitespace_as_suffix=False, allow_whitespace_only_pieces=True, add_dummy_prefix=True,
    remove_extra_whitespaces=False, normalization_rule_name="identity", max_sentencepiece_length=16,
    max_sentence_length=4192, shrinking_factor=0.75, num_sub_iterations=2, self_test_sample_size=0,
    vocabulary_output_piece_score=True, hard_vocab_limit=True, use_all_vocab=False,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
    unk_surface=" \u2047 ", num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
    minloglevel=2,
)
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


# ----------------------------------------------------------------------------------------- data
def make_index(rng):
    a_codes = sorted(rng.sample(range(CODEBOOK), A_CODES))
    seen, index = set(), {}
    while len(index) < N_ITEMS:
        t = (rng.choice(a_codes),) + tuple(rng.randrange(CODEBOOK) for _ in LEVELS[1:])
        if t in seen:
            continue
        seen.add(t)
        index[str(len(index))] = [f"<{lv}_{c}>" for lv, c in zip(LEVELS, t)]
    return index


def item_string(index, item):
    return "".join(index[str(item)])


def prompt_text(index, history):
    return TEMPLATE.replace("{H}", ", ".join(item_string(index, i) for i in history))


SYLLABLES = ("ka lo mi ren sta tor ve qu ing er tion al ba de fi go hu ja ke li mo nu pa ri su ta "
             "vo wa xe yo zu an el in on un str pl gr th sh ch ck").split()
ENGLISH = ("the a an of to and in is it that for on with as by this be are from at or was which "
           "user item items interacted chronological order can you predict next possible may expect "
           "below instruction describes task write response appropriately completes request "
           "product review rating price brand category beauty game games store buy bought cart "
           "history sequence model token tokens recommend recommendation language large data "
           "quick brown fox jumps over lazy dog hello world time year day week month number value").split()
ACCENTED = ["café", "naïve", "résumé", "über", "año", "façade", "crème", "brûlée", "déjà", "vu",
            "Zürich", "São", "Paulo", "élan", "coöperate", "piñata", "smörgåsbord", "Ångström",
            "日本", "Привет"]
# Rare enough (a handful of occurrences in the corpus) to fall under character_coverage: these
# characters get no piece and go through byte fallback, like most CJK and emoji in LLaMA's vocab.
RARE = ["中文", "한국어", "γειά", "שלום", "مرحبا", "😀", "🚀", "👍🏽", "∑", "€", "™", "…", "—",
        "“quoted”", "½", "→", "テキスト", "東京"]
ASCII_LINE = "".join(chr(c) for c in range(33, 127))


def make_corpus(rng):
    words = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))
                    for _ in range(2500)})
    weights = [1.0 / (k + 1) for k in range(len(words))]
    lines = []
    for n in range(6000):
        r = rng.random()
        if r < 0.55:
            toks = rng.choices(words, weights, k=rng.randint(4, 16))
            toks += rng.sample(ENGLISH, rng.randint(1, 6))
            rng.shuffle(toks)
        elif r < 0.75:
            toks = rng.sample(ENGLISH, rng.randint(5, 15))
        elif r < 0.85:
            toks = [str(rng.randint(0, 10 ** rng.randint(1, 7))), rng.choice(ENGLISH),
                    f"{rng.randint(0, 99)}.{rng.randint(0, 9999)}",
                    f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"]
        elif r < 0.998:
            toks = rng.sample(ACCENTED, rng.randint(1, 4)) + rng.sample(ENGLISH, 3)
            rng.shuffle(toks)
        else:
            toks = rng.choices(words, k=3) + [rng.choice(RARE)]
        toks = [t.capitalize() if rng.random() < 0.1 else t for t in toks]
        sep = " " if rng.random() < 0.9 else rng.choice(["  ", "\t", " , ", ". ", "! ", "? ", "; "])
        lines.append(sep.join(toks) + rng.choice([".", ".", "", "!", "?", ":", ")"]))
        if n % 50 == 0:  # the template, with plain words where the items go
            lines.append(TEMPLATE.replace("{H}", ", ".join(rng.sample(words, 3))))
        if n % 100 == 0:  # every printable ASCII character, as LLaMA's vocab has them all
            lines.append(ASCII_LINE)
    return lines


def train_sentencepiece(lines):
    spm.set_random_generator_seed(SEED)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **SP_ARGS)
    return buf.getvalue()


def text_cases(index, rng):
    it = lambda i: item_string(index, i)  # noqa: E731
    a, b = index["0"][0], index["0"][1]
    c, d = index["1"][2], index["2"][3]
    used_a = {int(codes[0][3:-1]) for codes in index.values()}
    unused_a = f"<a_{min(set(range(CODEBOOK)) - used_a)}>"  # well formed, but not an added token
    p3 = prompt_text(index, [5, 17, 42])
    return [
        ("digits", "12345"),
        ("decimal", "3.14159"),
        ("date", "2026-12-01"),
        ("number_words", "Item 42 costs $19.99 (was 25)."),
        ("accented", "café naïve résumé"),
        ("cjk", "日本語のテキスト"),
        ("emoji", "I like it 😀👍🏽!"),
        ("mixed_scripts", "Zürich 東京 Москва"),
        ("spaces_run", "a    b"),
        ("newlines", "line one\n\nline two\n"),
        ("tabs", "col1\tcol2\t\tcol3"),
        ("crlf", "windows\r\nline"),
        ("leading_trailing_spaces", "  padded text  "),
        ("only_spaces", "   "),
        ("only_newline", "\n"),
        ("empty", ""),
        ("code_glued_words", f"abc{a}def"),
        ("code_space_code", f"{a} {b}"),
        ("code_commas", f"x, {c},y"),
        ("code_only", d),
        ("code_newline_code", f"{a}\n{b}\t{c}"),
        ("code_item", it(0)),
        ("code_items_adjacent", it(1) + it(2)),
        ("code_items_spaced", "  " + it(3) + "   " + it(4) + "\n"),
        ("code_unused_and_malformed", f"{unused_a} <a_999> <e_1> {a[:-1]} {a}> <{a}"),
        ("literal_bos", "before <s> after"),
        ("literal_eos", "end</s>"),
        ("literal_unk", "an <unk> here"),
        ("literal_specials_glued", f"<s></s><unk><s>{a}"),
        ("partial_specials", f"<s{a} </ s> <unk </s"),
        ("code_then_digits", f"{a}123 4{b}5"),
        ("spiece_underline", "a\u2581b \u2581lead"),
        ("spiece_underline_alone", "\u2581"),
        ("spiece_underline_before_code", "\u2581" + a + "\u2581"),
        ("prompt_plus_item", p3 + it(7)),
        ("training_text", p3 + it(7) + "</s>"),
        ("prompt_space_item", p3 + " " + it(7)),
        ("response_sep", "Response:"),
        ("punctuation", "Hello, world! (yes) [no] {maybe} <tag> #hash @at"),
        ("long_word", "supercalifragilisticexpialidocious"),
    ]


# --------------------------------------------------------------------------------------- models
def base_config(vocab):
    return LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu",
        attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def load_base(path):
    return LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                            attn_implementation="eager")


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float().contiguous()


def lora_model(base_dir, vocab, modules_to_save):
    model = load_base(base_dir)
    set_seed(RESIZE_SEED)
    model.resize_token_embeddings(vocab)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=TARGET_MODULES, lora_dropout=0.0,
                     modules_to_save=modules_to_save, bias="none", task_type=TaskType.CAUSAL_LM)
    pm = get_peft_model(model, cfg)
    pm.peft_config["default"].base_model_name_or_path = "base"  # not the absolute path
    gen = torch.Generator().manual_seed(LORA_SEED + (1 if modules_to_save else 0))
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif ".modules_to_save." in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return pm.eval()


def save_adapter(pm, out, tokenizer, **kw):
    os.makedirs(out, exist_ok=True)
    pm.save_pretrained(out, **kw)
    readme = os.path.join(out, "README.md")  # peft's model card template: not part of the adapter
    if os.path.exists(readme):
        os.remove(readme)
    tokenizer.save_pretrained(out)


def save_sorted_safetensors(path, tensors, metadata):
    """safetensors with keys (and __metadata__ keys) in sorted order: bit-identical on reruns."""
    header, blobs, off = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    dt = {torch.float32: "F32", torch.int64: "I64"}
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        b = t.numpy().tobytes()
        header[k] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with safe_open(path, "pt") as f:  # the reference reader accepts it
        for k in tensors:
            assert torch.equal(f.get_tensor(k), tensors[k])


# ------------------------------------------------------------------------ tokenizer self-check
def reimplemented_ids(tok, sp, text):
    """The legacy slow LlamaTokenizer rule as C++ should implement it: cut the text at every
    occurrence of an added token (left to right; none of ours is a prefix of another or can
    overlap one), keep each added token as its id, encode every non-empty segment in between on its
    own with SentencePiece (its dummy prefix, so each segment starts a new "word"), BOS in front."""
    added = tok.get_added_vocab()  # content -> id, incl. <unk> <s> </s>
    ids, i, seg_start = [tok.bos_token_id], 0, 0
    by_first = {}
    for a in added:
        by_first.setdefault(a[0], []).append(a)
    while i < len(text):
        hit = None
        for a in sorted(by_first.get(text[i], []), key=len, reverse=True):
            if text.startswith(a, i):
                hit = a
                break
        if hit is None:
            i += 1
            continue
        if i > seg_start:
            ids += sp.encode(text[seg_start:i])
        ids.append(added[hit])
        i += len(hit)
        seg_start = i
    if len(text) > seg_start:
        ids += sp.encode(text[seg_start:])
    return ids


# ----------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "lcrec"))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    for sub in ("tokenizer", "base", "adapter_full", "adapter_full_bin", "adapter_lora_only",
                "merged_lora_only"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(SEED)

    # 1. index
    index = make_index(rng)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
        f.write("\n")
    new_tokens = sorted({t for codes in index.values() for t in codes})

    # 2. tokenizer
    model_bytes = train_sentencepiece(make_corpus(rng))
    tok_dir = os.path.join(out, "tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = os.path.join(tmp, "tokenizer.model")
        with open(vocab_file, "wb") as f:
            f.write(model_bytes)
        first = LlamaTokenizer(vocab_file=vocab_file, legacy=True, model_max_length=2048,
                               padding_side="right")
        first.pad_token_id = 0  # LC-Rec's finetune does this before saving
        added = first.add_tokens(new_tokens)
        assert added == len(new_tokens)
        first.save_pretrained(tok_dir)
    for extra in os.listdir(tok_dir):
        assert extra in TOKENIZER_FILES, extra
    tok = LlamaTokenizer.from_pretrained(tok_dir, legacy=True)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "tokenizer.model"))
    sp_vocab = sp.get_piece_size()
    assert sp_vocab == SP_VOCAB and tok.vocab_size == SP_VOCAB
    assert [tok.convert_tokens_to_ids(t) for t in new_tokens] == list(range(SP_VOCAB, len(tok)))

    # 3. prompts
    lengths = [1] * 20 + [2] * 20 + [rng.randint(3, 8) for _ in range(60)] + \
              [rng.randint(9, 19) for _ in range(60)] + [MAX_HISTORY] * 70
    cases = []
    for n in lengths:
        history = rng.sample(range(N_ITEMS), n)
        text = prompt_text(index, history)
        cases.append({"kind": "prompt", "history": history, "text": text,
                      "ids": tok(text)["input_ids"]})
    for name, text in text_cases(index, rng):
        cases.append({"kind": "text", "name": name, "text": text, "ids": tok(text)["input_ids"]})
    mismatches = [c for c in cases if reimplemented_ids(tok, sp, c["text"]) != c["ids"]]
    assert not mismatches, f"the documented rule misses {len(mismatches)} cases: {mismatches[:2]}"
    with open(os.path.join(out, "prompts.json"), "w") as f:
        head = {"transformers_version": transformers.__version__,
                "sentencepiece_version": spm.__version__, "template": TEMPLATE,
                "sp_vocab_size": sp_vocab, "len_tokenizer": len(tok)}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")

    # 4. models
    base_dir = os.path.join(out, "base")
    gen = torch.Generator().manual_seed(WEIGHT_SEED)
    base = LlamaForCausalLM(base_config(sp_vocab)).to(torch.float32)
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    base.save_pretrained(base_dir, safe_serialization=True)
    os.remove(os.path.join(base_dir, "generation_config.json"))
    base = load_base(base_dir).eval()

    vocab = len(tok)
    full = lora_model(base_dir, vocab, ["embed_tokens", "lm_head"])
    # save_embedding_layers=False only silences peft's "auto" probe of the base config (the
    # modules_to_save copies are saved either way).
    save_adapter(full, os.path.join(out, "adapter_full"), tok, safe_serialization=True,
                 save_embedding_layers=False)
    save_adapter(full, os.path.join(out, "adapter_full_bin"), tok, safe_serialization=False,
                 save_embedding_layers=False)
    lora_only = lora_model(base_dir, vocab, None)
    save_adapter(lora_only, os.path.join(out, "adapter_lora_only"), tok, safe_serialization=True,
                 save_embedding_layers=False)
    del full, lora_only

    # expected logits
    history3 = [5, 17, 42]
    input_ids = torch.tensor([tok(prompt_text(index, history3))["input_ids"]], dtype=torch.long)
    base_text = TEMPLATE.replace("{H}", "12, 345, 6789")
    base_input_ids = torch.tensor([tok(base_text)["input_ids"]], dtype=torch.long)
    assert base_input_ids.max() < sp_vocab and input_ids.max() >= sp_vocab
    base_logits = logits_of(base, base_input_ids)

    def peft_logits(adapter, seed):
        m = load_base(base_dir)
        set_seed(seed)
        m.resize_token_embeddings(vocab)
        pm = PeftModel.from_pretrained(m, os.path.join(out, adapter)).eval()
        unmerged = logits_of(pm, input_ids)
        merged = pm.merge_and_unload().eval()
        lg = logits_of(merged, input_ids)
        diff = (lg - unmerged).abs().max().item()
        scale = lg.abs().max().item()
        assert diff < 1e-5 * max(1.0, scale), (adapter, diff, scale)
        print(f"{adapter}: unmerged vs merged max |diff| {diff:.2e}, max |logit| {scale:.1f}")
        return lg, diff

    full_logits, d_full = peft_logits("adapter_full", 0)
    full_bin_logits, _ = peft_logits("adapter_full_bin", 1)  # other seed: rows come from the file
    assert torch.equal(full_logits, full_bin_logits)
    lora_only_logits, d_lora = peft_logits("adapter_lora_only", RESIZE_SEED)

    merged_dir = os.path.join(out, "merged_lora_only")
    merge(base_dir, os.path.join(out, "adapter_lora_only"), merged_dir, seed=RESIZE_SEED,
          dtype="float32", device="cpu", name_or_path="base")
    reloaded = load_base(merged_dir).eval()
    assert (logits_of(reloaded, input_ids) - lora_only_logits).abs().max().item() < 1e-6
    # The regenerated rows matter: another seed gives other logits.
    other, _ = peft_logits("adapter_lora_only", RESIZE_SEED + 1)
    assert not torch.allclose(other, lora_only_logits, atol=1e-3)

    metadata = {
        "generator": "tools/make_lcrec_fixture.py",
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "torch_version": torch.__version__,
        "sentencepiece_version": spm.__version__,
        "python_version": platform.python_version(),
        "seed": str(SEED), "weight_seed": str(WEIGHT_SEED), "lora_seed": str(LORA_SEED),
        "resize_seed": str(RESIZE_SEED),
        "input_history": json.dumps(history3),
        "base_input_text": base_text,
        "attn_implementation": "eager",
    }
    save_sorted_safetensors(os.path.join(out, "expected.safetensors"), {
        "input_ids": input_ids, "base_input_ids": base_input_ids, "base_logits": base_logits,
        "full_logits": full_logits, "lora_only_logits": lora_only_logits,
    }, metadata)

    n_prompt = sum(c["kind"] == "prompt" for c in cases)
    print(f"items {N_ITEMS}, code tokens {len(new_tokens)}, sp vocab {sp_vocab}, len(tokenizer) "
          f"{vocab}, cases {len(cases)} ({n_prompt} prompt, {len(cases) - n_prompt} text), "
          f"T {input_ids.shape[1]}, Tb {base_input_ids.shape[1]}")
    print(f"unmerged vs merged max |diff|: full {d_full:.2e}, lora_only {d_lora:.2e}; logits std "
          f"base {base_logits.std(-1).mean():.3f} full {full_logits.std(-1).mean():.3f} "
          f"lora_only {lora_only_logits.std(-1).mean():.3f}")
    total = 0
    for dirpath, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            size = os.path.getsize(os.path.join(dirpath, fn))
            total += size
            print(f"  {os.path.relpath(os.path.join(dirpath, fn), out)}: {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
