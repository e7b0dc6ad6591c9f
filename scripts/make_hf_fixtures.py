#!/usr/bin/env python3
"""Writes a tiny Hugging Face BERT checkpoint and its transformers outputs under
Tests/Fixtures/text/tiny_bert* (run once, commit the output; needs torch and transformers).

tiny_bert/                 config.json, model.safetensors (BertModel names), vocab.txt,
                           model_pretraining.safetensors (BertForPreTraining: bert.* + pooler + cls.*),
                           model_f16.safetensors, model_bf16.safetensors (the same weights, half precision)
tiny_bert_sharded/         the BertModel weights in two shards with model.safetensors.index.json
tiny_bert_outputs.h5       input_ids, token_type_ids, attention_mask [B, L] and last_hidden_state [B, L, H]
                           (computed in float64 from the float32 weights, stored as float32)
"""
import os, shutil, json
import numpy as np, torch, h5py
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, BertForPreTraining, BertTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "text")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "good", "bad", "great", "i", "it",
         "not", "love", "hate", "this", "film", "very", "so", ",", ".", "!", "?", "a", "an", "and", "but", "##s",
         "##ing", "##ed", "act", "play", "watch", "you", "we", "they", "really", "just", "um", "uh", "like"]

def main():
    torch.manual_seed(1234)
    cfg = BertConfig(vocab_size=len(WORDS) + 6, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertModel(cfg, add_pooling_layer=True).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            # Spread the values so that every tensor matters in the comparison.
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.1) + (1.0 if "LayerNorm.weight" in n else 0.0))
    d = os.path.join(OUT, "tiny_bert")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(WORDS + [f"[unused{i}]" for i in range(6)]) + "\n")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file({k: v.half() for k, v in sd.items() if v.is_floating_point()}, os.path.join(d, "model_f16.safetensors"), {"format": "pt"})
    save_file({k: v.bfloat16() for k, v in sd.items() if v.is_floating_point()}, os.path.join(d, "model_bf16.safetensors"), {"format": "pt"})
    pre = BertForPreTraining(cfg).eval()
    pre.bert.load_state_dict(model.state_dict())
    save_file({k: v.clone().contiguous() for k, v in pre.state_dict().items()}, os.path.join(d, "model_pretraining.safetensors"), {"format": "pt"})

    s = os.path.join(OUT, "tiny_bert_sharded")
    shutil.rmtree(s, ignore_errors=True)
    model.save_pretrained(s, safe_serialization=True, max_shard_size="40KB")
    shutil.copy(os.path.join(d, "vocab.txt"), s)
    assert os.path.exists(os.path.join(s, "model.safetensors.index.json")), os.listdir(s)

    tok = BertTokenizer.from_pretrained(d)
    sents = ["the movie was good", "I HATE this film, really!", "um uh like it was not bad but not great",
             "watching and acting", ""]
    enc = tok(sents, padding="max_length", max_length=12, truncation=True, return_tensors="pt")
    enc["token_type_ids"][1, 6:] = 1  # a second segment, to exercise token type embeddings
    m64 = BertModel.from_pretrained(d).double().eval()
    with torch.no_grad():
        h = m64(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                attention_mask=enc["attention_mask"]).last_hidden_state
    with h5py.File(os.path.join(OUT, "tiny_bert_outputs.h5"), "w") as f:
        for k in ("input_ids", "token_type_ids", "attention_mask"):
            f[k] = enc[k].numpy().astype(np.int32)
        f["last_hidden_state"] = h.numpy().astype(np.float32)
        f.attrs["sentences_json"] = json.dumps(sents)
    print("tiny BERT fixtures written; files:", sorted(os.listdir(d)), sorted(os.listdir(s)))

if __name__ == "__main__":
    main()
