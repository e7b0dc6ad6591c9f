#!/usr/bin/env python3
"""Checks that a directory written by skesl's BERT export loads in transformers:
`check_hf_export.py DIR OUTPUTS_H5` loads BertModel and BertTokenizer from DIR, tokenizes the
fixture's sentences, runs the model in float64 and compares with the fixture's last hidden state.
Exit 0 when both match, 1 otherwise (with the reason). Used by the Swift tests when the venv
has transformers."""
import json, sys
import numpy as np, h5py, torch
from transformers import BertModel, BertTokenizer

def main(d, fixture):
    with h5py.File(fixture, "r") as f:
        ids = f["input_ids"][()]; tt = f["token_type_ids"][()]; am = f["attention_mask"][()]
        want = f["last_hidden_state"][()]
        sents = json.loads(f.attrs["sentences_json"])
    tok = BertTokenizer.from_pretrained(d)
    got_ids = tok(sents, padding="max_length", max_length=ids.shape[1], truncation=True)["input_ids"]
    if not np.array_equal(np.array(got_ids), ids):
        print("token ids differ:", got_ids, ids.tolist()); return 1
    model = BertModel.from_pretrained(d).double().eval()
    with torch.no_grad():
        h = model(input_ids=torch.tensor(ids, dtype=torch.long), token_type_ids=torch.tensor(tt, dtype=torch.long),
                  attention_mask=torch.tensor(am, dtype=torch.long)).last_hidden_state.numpy()
    err = np.abs(h - want).max() / max(np.abs(want).max(), 1e-30)
    if not err <= 1e-5:
        print(f"last hidden state differs: relative error {err}"); return 1
    print(f"ok: relative error {err:.2e}")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
