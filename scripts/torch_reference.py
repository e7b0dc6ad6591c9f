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
