"""PyTorch reference of the SKESL model exactly as docs/model.md specifies it.

BERT is Hugging Face's own BertModel (eager attention, no pooler) under the name `bert`;
the cross-modal encoder and the head are written here with the parameter names of the
contract, registered in the contract's flat-buffer order, so `state_dict()` names and
order equal docs/model.md. Used by make_model_fixtures.py and the peer benchmarks.
"""
import math

import torch
from torch import nn
from transformers import BertConfig, BertModel

F32_MIN = torch.finfo(torch.float32).min  # additive mask value the contract fixes


def default_config():
    """The toy config of docs/model.md (a dict shaped like the Swift ModelConfig JSON)."""
    return {
        "bert": {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "intermediate_size": 64, "max_position_embeddings": 40, "type_vocab_size": 2,
                 "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                 "pad_token_id": 0, "hidden_act": "gelu"},
        "crossmodal": {"layers": 2, "attentionDim": 16, "audioDim": 7, "videoDim": 9, "shared": True,
                       "maskModalityPadding": False, "dropout": 0.0, "layerNormEps": 1e-5},
        "head": {"hidden": 8, "dropout": 0.0},
        "task": "pretrain", "freezeBert": True, "maskedMeanPooling": False,
    }


def hf_bert(bert_cfg):
    cfg = BertConfig(attn_implementation="eager", **bert_cfg)
    return BertModel(cfg, add_pooling_layer=False)


def key_padding_bias(lengths, t_max, dtype):
    """[B, 1, T] additive bias: float32.min on frames t >= length; length 0 counts as T."""
    lengths = torch.where(lengths <= 0, torch.full_like(lengths, t_max), lengths)
    frames = torch.arange(t_max, device=lengths.device)
    masked = frames[None, :] >= lengths[:, None]
    bias = torch.zeros(masked.shape, dtype=dtype, device=lengths.device)
    return bias.masked_fill(masked, F32_MIN)[:, None, :]


class CrossModalAttention(nn.Module):
    """Single-head attention of text rows over one modality (cma_a or cma_v)."""

    def __init__(self, hidden, modality_dim, e, eps):
        super().__init__()
        self.ln_text = nn.LayerNorm(hidden, eps=eps)
        self.ln_modality = nn.LayerNorm(modality_dim, eps=eps)
        self.q = nn.Linear(hidden, e)
        self.k = nn.Linear(modality_dim, e)
        self.v = nn.Linear(modality_dim, e)
        self.out = nn.Linear(e, hidden)
        self.e = e

    def keys_values(self, m):
        n = self.ln_modality(m)
        return self.k(n), self.v(n)

    def attend(self, x, k, v, bias):
        q = self.q(self.ln_text(x))
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.e)
        if bias is not None:
            s = s + bias
        return self.out(torch.matmul(torch.softmax(s, dim=-1), v))

    def forward(self, x, m, bias=None):
        k, v = self.keys_values(m)
        return self.attend(x, k, v, bias)


class CrossModalLayer(nn.Module):
    def __init__(self, hidden, c):
        super().__init__()
        eps = c["layerNormEps"]
        self.cma_a = CrossModalAttention(hidden, c["audioDim"], c["attentionDim"], eps)
        self.cma_v = CrossModalAttention(hidden, c["videoDim"], c["attentionDim"], eps)
        self.ln = nn.LayerNorm(hidden, eps=eps)
        self.fc = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(c["dropout"])

    def forward(self, x, audio, video, abias=None, vbias=None):
        y = self.cma_a(x, audio, abias) + self.cma_v(x, video, vbias) + x
        return self.dropout(self.fc(self.ln(y))) + y


class CrossModalEncoder(nn.Module):
    """`layers` applications of one parameter set (shared) or of `layers` independent sets."""

    def __init__(self, hidden, c):
        super().__init__()
        self.n = c["layers"]
        self.shared = c["shared"]
        self.mask_padding = c["maskModalityPadding"]
        self.layers = nn.ModuleList(CrossModalLayer(hidden, c) for _ in range(1 if self.shared else self.n))

    def layer(self, l):
        return self.layers[0 if self.shared else l]

    def biases(self, audio, video, audio_lengths, video_lengths, dtype):
        if not self.mask_padding:
            return None, None
        return (key_padding_bias(audio_lengths, audio.shape[1], dtype),
                key_padding_bias(video_lengths, video.shape[1], dtype))

    def forward(self, x, audio, video, audio_lengths=None, video_lengths=None):
        abias, vbias = self.biases(audio, video, audio_lengths, video_lengths, x.dtype)
        for l in range(self.n):
            x = self.layer(l)(x, audio, video, abias, vbias)
        return x


class Head(nn.Module):
    def __init__(self, hidden, h):
        super().__init__()
        self.fc1 = nn.Linear(hidden, h["hidden"])
        self.fc2 = nn.Linear(h["hidden"], 1)
        self.dropout = nn.Dropout(h["dropout"])

    def forward(self, x):
        return self.fc2(self.dropout(torch.relu(self.fc1(x)))).squeeze(-1)


def mean_pool(x, attention_mask, masked):
    if not masked:
        return x.mean(dim=1)
    m = attention_mask.to(x.dtype)[:, :, None]
    return (x * m).sum(dim=1) / m.sum(dim=1)


class SKESLModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.task = config["task"]
        assert self.task in ("pretrain", "finetune", "text_only"), self.task
        hidden = config["bert"]["hidden_size"]
        self.bert = hf_bert(config["bert"])
        if self.task != "text_only":
            self.crossmodal = CrossModalEncoder(hidden, config["crossmodal"])
        self.head = Head(hidden, config["head"])
        if config["freezeBert"]:
            for p in self.bert.parameters():
                p.requires_grad_(False)

    def trainable_named_parameters(self):
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def forward(self, batch):
        """batch: dict of the docs/model.md inputs as tensors. Returns a dict of outputs."""
        x0 = self.bert(input_ids=batch["input_ids"].long(), token_type_ids=batch["token_type_ids"].long(),
                       attention_mask=batch["attention_mask"].long()).last_hidden_state
        out = {"bert_last_hidden": x0}
        masked_pool = self.config["maskedMeanPooling"]
        if self.task == "text_only":
            out["prediction"] = self.head(mean_pool(x0, batch["attention_mask"], masked_pool))
            return out
        xl = self.crossmodal(x0, batch["audio"].to(x0.dtype), batch["video"].to(x0.dtype),
                             batch.get("audio_lengths"), batch.get("video_lengths"))
        out["encoder_out"] = xl
        if self.task == "pretrain":
            rows = xl[torch.arange(xl.shape[0]), batch["mask_pos"].long()]
        else:
            rows = mean_pool(xl, batch["attention_mask"], masked_pool)
        out["prediction"] = self.head(rows)
        return out


def l1_loss(prediction, targets):
    return nn.functional.l1_loss(prediction, targets.to(prediction.dtype))


# ---- The released SKESL code's own data paths (github qianfan1996/SKESL) -------------------
# skesl departs from these on purpose or offers them as settings; each departure is a
# "reference quirk" in docs/text.md or docs/model.md. These functions restate the released
# code's behaviour (data_loader.py, main.py) so make_reference_fixtures.py can record what it
# gives; they are the reference side of the parity tests, not part of the model above.

def released_load_lexicon(path):
    """data_loader.load_lexicon: every line split on whitespace, key = first field, value =
    second field (a string; float() is applied only when a transcript holds the key); a
    repeated key keeps its last value. `fed up<TAB>-1.8` thus gives fed -> 'up'."""
    lexicon = {}
    with open(path, "r", encoding="utf-8") as f:
        for line in f.readlines():
            fields = line.split()
            lexicon[fields[0]] = fields[1]
    return lexicon


WINDOW_PAST, WINDOW_BEFORE, WINDOW_AFTER = 36, 20, 19   # mask_text_bert's constants (length 39)


def released_mask_text(text, lexicon, tokenizer, length=39):
    """data_loader.mask_text_bert for a transcript that holds a lexicon word (its other
    branch draws the position with Python's random). Returns (input_ids, token_type_ids,
    attention_mask, target, mask position). Raises ValueError where the released code does:
    when any lexicon word of the transcript has a value that is not a number.
    - the attention mask and token types are those of the *unmasked* text;
    - every occurrence of the strongest word becomes [MASK]; the masked tokens are joined
      back into a string and tokenised again;
    - when the first [MASK] lies past position 36, the tokens [i-20, i+19) are kept, and the
      attention mask stays the unmasked text's (all ones), also over the window's padding."""
    assert length == 39, "the released code fixes the length at 39"
    tokens = tokenizer.tokenize(text)
    whole = tokenizer(text, padding="max_length", truncation=True, max_length=length)
    words = [t for t in tokens if t in lexicon]
    if not words:
        raise LookupError("no lexicon word: the released code draws the position with Python's random")
    scores = [float(lexicon[w]) for w in words]          # ValueError on 'up', "'}{'", ...
    strongest = words[scores.index(max(scores, key=abs))]
    masked = ["[MASK]" if t == strongest else t for t in tokens]
    first = masked.index("[MASK]")
    if first > WINDOW_PAST:
        masked = masked[first - WINDOW_BEFORE:first + WINDOW_AFTER]
        first = WINDOW_BEFORE
    ids = tokenizer.encode(tokenizer.convert_tokens_to_string(masked), padding="max_length",
                           truncation=True, max_length=length)
    target = round(float(lexicon[strongest]) * 0.75, 3)
    return ids, whole["token_type_ids"], whole["attention_mask"], target, first + 1


def released_valid_loss(predictions, labels, batch_size=32):
    """main.valid_epoch: a DataLoader of batch_size (shuffle=False, last batch partial) over
    [N, 1] outputs and labels, nn.L1Loss (mean) per batch, summed as Python floats, divided
    by the number of batches. Inputs are float32, as the released model computes them."""
    from torch.utils.data import DataLoader, TensorDataset
    data = TensorDataset(torch.as_tensor(predictions, dtype=torch.float32)[:, None],
                         torch.as_tensor(labels, dtype=torch.float32)[:, None])
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    criterion = nn.L1Loss()
    total = 0.0
    for output, label in loader:
        total += criterion(output, label).item()
    return total / len(loader)


def released_best_epoch(valid_losses):
    """main.py's choice: starting from 999, an epoch is saved when its loss is strictly lower
    than the best so far (ties keep the earlier epoch). Returns the 0-based epoch."""
    best, chosen = 999, None
    for epoch, loss in enumerate(valid_losses):
        if loss < best:
            best, chosen = loss, epoch
    return chosen
