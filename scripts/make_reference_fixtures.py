"""Writes the fixtures of the reference quirks (docs/text.md and docs/model.md) from the
released SKESL code's own paths as scripts/torch_reference.py restates them:

  Tests/Fixtures/text/reference_masking.json   sentiment word masking with the reference
      lexicon and its whitespace rule, on the bert-base-uncased vocabulary: what the released
      mask_text_bert gives per transcript (window cases with its all-ones attention mask
      included), or that it raises, and then what skesl gives (the keys whose value is not
      a number left out); the target the vaderSentiment 3.3.2 lexicon would give instead.
  Tests/Fixtures/model/reference_window.h5     a toy vocabulary, lexicon and pretraining
      model; the batch the released masking gives for three transcripts (two windowed) and
      the model's predictions with that attention mask and with the padding masked.
  Tests/Fixtures/training/reference_selection.json   predictions of 12 epochs on 229
      validation samples: main.valid_epoch's per-batch-mean loss, the per-sample MAE, and the
      epoch each one selects (they differ).

Needs scripts/setup --torch (PyTorch, transformers) and the reference lexicon that
scripts/setup writes. Run: .venv/bin/python scripts/make_reference_fixtures.py
"""
import glob
import hashlib
import json
import os
import sys
import tempfile

import h5py
import numpy as np
import torch
from transformers import BertTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402
from make_model_fixtures import put, randomise  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
REF_LEXICON = os.path.join(ROOT, ".venv", "reference-lexicon", "vader_lexicon.txt")


def tab_lexicon(path):
    """vaderSentiment's own rule (tab-separated, last wins), values kept as strings."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                fields = line.split("\t")
                out[fields[0]] = fields[1]
    return out


def scorable(lexicon):
    """skesl's handling of the reference rule's odd keys: those whose value is not a
    number are not lexicon words (the released code raises on any transcript holding one)."""
    good, odd = {}, {}
    for k, v in lexicon.items():
        try:
            float(v)
            good[k] = v
        except ValueError:
            odd[k] = v
    return good, odd


def hf_tokenizer(vocab_path):
    """transformers 5's BertTokenizer (the fast one, as AutoTokenizer gives the released code)
    on a vocab.txt: one token a line, line number = id."""
    with open(vocab_path, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def outcome(result):
    ids, types, att, target, pos = result
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": att, "target": target,
            "mask_position": pos}


# ---- masking with the reference lexicon (bert-base-uncased vocabulary) ----

def masking_cases(tok, lex_ref, lex_332):
    filler_pool = ("the movie we went to see it with my friends after dinner and then they talked about plot "
                   "for hours in car on way home next day told sister story of film she said was at cinema "
                   "near our house he this that one time when were there again").split()
    filler = [w for w in filler_pool if w not in lex_ref and w not in lex_332 and tok.tokenize(w) == [w]]
    assert len(filler) >= 30, filler

    def words(n, offset=0):
        return [filler[(offset + i) % len(filler)] for i in range(n)]

    texts = [
        "i love this movie",
        "The acting was GOOD but the plot was bad",
        "bad movie and horrible acting bad",           # a tie: the first (bad) wins, both bads masked
        "good good great",
        # entries that differ between the reference's file (3.1.1) and vaderSentiment 3.3.2
        "my heart was broken but the ending was good",
        "she hearts every sad song",
        "a flawed film with a nice ending",
        # the whitespace rule's odd keys: fed -> 'up', screwed -> 'up', ( -> "'}{'"
        "i am so fed up with this nice show",
        "we got screwed over by the great plot",
        "the movie ( sort of ) was great",
        "i fed the happy cat",
        # can't stand -> key "can't", never a BERT token (can ' t): no effect
        "i can't stand this bad movie",
    ]
    # The window: the only lexicon word at 0-based position p, then a tail of k words.
    for p, k in [(36, 3), (37, 0), (37, 3), (40, 16), (45, 25), (55, 2), (60, 30)]:
        texts.append(" ".join(words(p) + ["great"] + words(k, offset=p)))
    # The strongest word twice (both masked), a weaker one before it, the window on the first.
    texts.append(" ".join(words(30) + ["nice"] + words(10, 30) + ["love"] + words(5, 7) + ["love"] + words(4, 3)))
    texts.append(" ".join(["Great"] + words(50) + ["bad"] + words(6)))   # strongest first: no window

    good_ref, odd = scorable(lex_ref)
    cases = []
    for text in texts:
        tokens = tok.tokenize(text)
        # In-place masking equals the reference's re-tokenisation when no word is split.
        assert not any(t.startswith("##") for t in tokens), text
        case = {"text": text, "tokens": len(tokens)}
        try:
            case["reference"] = outcome(ref.released_mask_text(text, lex_ref, tok))
        except ValueError as e:
            case["reference_raises"] = f"ValueError: {e}"
            case["odd_keys"] = sorted({t for t in tokens if t in odd})
            case["skesl"] = outcome(ref.released_mask_text(text, good_ref, tok))
        try:
            case["target_vader_3_3_2"] = ref.released_mask_text(text, lex_332, tok)[3]
        except LookupError:
            case["target_vader_3_3_2"] = None
        cases.append(case)
    return cases, odd


def write_masking():
    if not os.path.exists(REF_LEXICON):
        sys.exit(f"{REF_LEXICON} is missing: run scripts/setup")
    lex_ref = ref.released_load_lexicon(REF_LEXICON)
    v332 = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/vaderSentiment/vader_lexicon.txt"))[0]
    import vaderSentiment
    assert vaderSentiment.__file__ and "3.3.2" in open(glob.glob(os.path.join(
        os.path.dirname(os.path.dirname(vaderSentiment.__file__)), "vaderSentiment-*.dist-info/METADATA"))[0]).read()
    lex_332 = tab_lexicon(v332)
    tok = hf_tokenizer(os.path.join(FIX, "text", "vocab_uncased.txt"))
    cases, odd = masking_cases(tok, lex_ref, lex_332)
    windowed = [c for c in cases if "reference" in c and c["reference"]["mask_position"] == 21]
    assert any(0 in c["reference"]["input_ids"] for c in windowed), "a window with padding is needed"
    assert sum("reference_raises" in c for c in cases) == 4
    out = {
        "lexicon_sha256": hashlib.sha256(open(REF_LEXICON, "rb").read()).hexdigest(),
        "unscorable": odd,
        "max_length": 39,
        "cases": cases,
    }
    path = os.path.join(FIX, "text", "reference_masking.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{path}: {len(cases)} transcripts, {len(windowed)} windowed, unscorable keys {sorted(odd)}")


# ---- the window's attention mask through the model ----

TOY_WORDS = ("the movie was good great bad a it we then they see film story plot and with my to of in on at "
             "for day night one time when there again house car home next said told after dinner friends "
             "cinema near our he she this that was scene music song show long short old new").split()


def write_window():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for w in TOY_WORDS:
        if w not in vocab:
            vocab.append(w)
    vocab = vocab[:64]
    assert len(vocab) <= 64
    lexicon_text = "good\t1.9\t0.9\t[2]\ngreat\t3.1\t0.7\t[3]\nbad\t-2.5\t0.7\t[-2]\nfed up\t-1.8\t1.2\t[-2]\n"
    neutral = [w for w in vocab[5:] if w not in ("good", "great", "bad")]
    with tempfile.TemporaryDirectory() as d:
        vp = os.path.join(d, "vocab.txt")
        with open(vp, "w") as f:
            f.write("\n".join(vocab) + "\n")
        lp = os.path.join(d, "lexicon.txt")
        with open(lp, "w") as f:
            f.write(lexicon_text)
        tok = hf_tokenizer(vp)
        lexicon = ref.released_load_lexicon(lp)
    lexicon, _ = scorable(lexicon)

    def words(n, offset):
        return [neutral[(offset + 7 * i) % len(neutral)] for i in range(n)]

    texts = [" ".join(words(45, 1) + ["great"] + words(2, 3)),     # window with 14 [PAD]
             " ".join(words(40, 2) + ["bad"] + words(20, 5)),      # full window: no padding
             " ".join(words(3, 4) + ["good"] + words(5, 6))]       # short: no window
    rows = [ref.released_mask_text(t, lexicon, tok) for t in texts]
    B, L = len(rows), 39
    c = ref.default_config()
    c["task"] = "pretrain"
    c["freezeBert"] = True
    torch.manual_seed(31)
    model = ref.SKESLModel(c)
    randomise(model)
    weights32 = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(3107)
    cm = c["crossmodal"]
    batch = {
        "input_ids": torch.tensor([r[0] for r in rows], dtype=torch.int32),
        "token_type_ids": torch.tensor([r[1] for r in rows], dtype=torch.int32),
        "attention_mask": torch.tensor([r[2] for r in rows], dtype=torch.int32),
        "audio": torch.randn(B, 12, cm["audioDim"], generator=gen),
        "video": torch.randn(B, 6, cm["videoDim"], generator=gen),
        "audio_lengths": torch.full((B,), 12, dtype=torch.int32),
        "video_lengths": torch.full((B,), 6, dtype=torch.int32),
        "mask_pos": torch.tensor([r[4] for r in rows], dtype=torch.int32),
        "targets": torch.tensor([r[3] for r in rows], dtype=torch.float32),
    }
    assert batch["input_ids"].shape == (B, L)
    model = model.double().eval()
    b64 = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    with torch.no_grad():
        quirk = model(b64)["prediction"]
        masked = dict(b64)
        masked["attention_mask"] = (batch["input_ids"] != 0).to(torch.int32)   # skesl's default
        default = model(masked)["prediction"]
    diff = (quirk - default).abs()
    assert diff[0] > 1e-3 and diff[1] == 0 and diff[2] == 0, diff
    path = os.path.join(FIX, "model", "reference_window.h5")
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f.attrs["config_json"] = json.dumps(c)
        f.attrs["vocab_json"] = json.dumps(vocab)
        f.attrs["lexicon_text"] = lexicon_text
        f.attrs["texts_json"] = json.dumps(texts)
        for n, t in weights32.items():
            put(f, f"weights/{n}", t.numpy())
        for n, t in batch.items():
            put(f, f"batch/{n}", t.numpy())
        put(f, "outputs/prediction", quirk.float().numpy())
        put(f, "outputs/prediction_padding_masked", default.float().numpy())
    print(f"{path}: predictions {quirk.tolist()} (padding masked: {default.tolist()})")


# ---- best-epoch selection ----

def write_selection():
    n, epochs = 229, 12                      # MOSI's validation split: 7 full batches and one of 5
    gen = np.random.default_rng(12)
    labels = np.round(gen.uniform(-3, 3, n), 1).astype(np.float32)
    for attempt in range(1000):
        preds = []
        for e in range(epochs):
            scale = 1.2 * 0.85 ** e + 0.1 * gen.random()
            p = labels + gen.normal(0, scale, n)
            # the last (partial) batch swings from epoch to epoch
            p[-5:] = labels[-5:] + gen.normal(0, 0.2 + 2.5 * gen.random(), 5)
            preds.append(p.astype(np.float32))
        batch_mean = [ref.released_valid_loss(p, labels) for p in preds]
        sample_mae = [float(np.mean(np.abs(p.astype(np.float64) - labels))) for p in preds]
        a, b = ref.released_best_epoch(batch_mean), ref.released_best_epoch(sample_mae)
        if a != b and min(a, b) >= 3:
            break
    else:
        sys.exit("no epoch sequence where the two selections differ")
    out = {"batch_size": 32, "labels": labels.tolist(), "predictions": [p.tolist() for p in preds],
           "batch_mean": batch_mean, "sample_mae": sample_mae,
           "reference_best_epoch": a, "sample_mae_best_epoch": b}
    path = os.path.join(FIX, "training", "reference_selection.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"{path}: reference selects epoch {a + 1}, per-sample MAE selects epoch {b + 1} (1-based)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    write_masking()
    write_window()
    write_selection()
