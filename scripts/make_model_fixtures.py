"""Writes Tests/Fixtures/model/<case>.h5 (layout: docs/model.md) and optim.h5 (layout:
Tests/Fixtures/model/README.md) from the PyTorch reference, after checking the reference:
parameter names against the contract, Hugging Face's BERT against an independent
transcription of the contract's BERT, and autograd against finite differences.

Run: .venv/bin/python scripts/make_model_fixtures.py [--out Tests/Fixtures/model]
"""
import argparse
import copy
import json
import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402

B, L, TA, TV = 3, 10, 12, 6
TEXT_LENGTHS = [10, 7, 4]
MASK_ID, CLS_ID, SEP_ID, FIRST_WORD_ID = 4, 1, 2, 5
ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def put(f, name, data):
    """Compress only tensors large enough for chunking to pay off (chunk indexes cost ~KB each)."""
    data = np.ascontiguousarray(data)
    if data.nbytes >= 8192:
        return f.create_dataset(name, data=data, compression="gzip", compression_opts=9, shuffle=True)
    return f.create_dataset(name, data=data)

# name -> (seed, config changes, audio lengths, video lengths)
CASES = {
    "pretrain_frozen_shared": (11, {"task": "pretrain", "freezeBert": True,
                                    "crossmodal": {"shared": True, "layers": 2}}, [12, 8, 3], [6, 2, 5]),
    "pretrain_unfrozen_independent": (12, {"task": "pretrain", "freezeBert": False,
                                           "crossmodal": {"shared": False, "layers": 3, "maskModalityPadding": True}},
                                      [12, 9, 5], [4, 6, 2]),
    "finetune_shared": (13, {"task": "finetune", "freezeBert": False, "maskedMeanPooling": False,
                             "crossmodal": {"shared": True, "layers": 2}}, [7, 12, 10], [6, 5, 3]),
    "finetune_masked_pool": (14, {"task": "finetune", "freezeBert": False, "maskedMeanPooling": True,
                                  "crossmodal": {"shared": True, "layers": 2, "maskModalityPadding": True}},
                             [12, 4, 9], [0, 6, 3]),
    "text_only": (15, {"task": "text_only", "freezeBert": False, "maskedMeanPooling": False}, [12, 6, 2], [6, 1, 4]),
}


def case_config(changes):
    c = ref.default_config()
    for k, v in changes.items():
        if isinstance(v, dict):
            c[k].update(v)
        else:
            c[k] = v
    return c


def expected_names(c):
    """Parameter names and order transcribed from docs/model.md (independent of the modules)."""
    names = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
             "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
             "bert.embeddings.LayerNorm.bias"]
    for l in range(c["bert"]["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        for s in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"]:
            names += [p + s + ".weight", p + s + ".bias"]
    if c["task"] != "text_only":
        cm = c["crossmodal"]
        for i in range(1 if cm["shared"] else cm["layers"]):
            p = f"crossmodal.layers.{i}."
            for m in ["cma_a", "cma_v"]:
                for s in ["ln_text", "ln_modality", "q", "k", "v", "out"]:
                    names += [p + f"{m}.{s}.weight", p + f"{m}.{s}.bias"]
            names += [p + "ln.weight", p + "ln.bias", p + "fc.weight", p + "fc.bias"]
    names += ["head.fc1.weight", "head.fc1.bias", "head.fc2.weight", "head.fc2.bias"]
    return names


def randomise(model):
    """Larger-than-default BERT weights and random LayerNorms, so every tensor matters in the test."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_ln = "LayerNorm" in name or ".ln" in name
            if is_ln and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif is_ln:
                p.copy_(0.2 * torch.randn_like(p))
            elif name.startswith("bert.") and name.endswith("weight"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.startswith("bert."):
                p.copy_(0.1 * torch.randn_like(p))
            # cross-modal and head Linears keep PyTorch's default (seeded) initialisation


def make_batch(c, audio_lengths, video_lengths, gen):
    vocab = c["bert"]["vocab_size"]
    ids = torch.zeros(B, L, dtype=torch.int32)
    att = torch.zeros(B, L, dtype=torch.int32)
    mask_pos = torch.zeros(B, dtype=torch.int32)
    for b, n in enumerate(TEXT_LENGTHS):
        ids[b, 0] = CLS_ID
        ids[b, 1:n - 1] = torch.randint(FIRST_WORD_ID, vocab, (n - 2,), generator=gen, dtype=torch.int32)
        ids[b, n - 1] = SEP_ID
        att[b, :n] = 1
        if c["task"] == "pretrain":
            hi = 7 if b == 0 else n - 1  # sample 0 also gets a second [MASK] at 8, after the first
            pos = int(torch.randint(1, hi, (1,), generator=gen))
            ids[b, pos] = MASK_ID
            mask_pos[b] = pos
    if c["task"] == "pretrain":
        ids[0, 8] = MASK_ID  # a later, second [MASK]: the head still reads mask_pos (the first)
        assert mask_pos[0] < 8
    cm = c["crossmodal"]

    def frames(t, d, lengths):
        x = torch.randn(B, t, d, generator=gen) + 0.3 * torch.randn(1, 1, d, generator=gen)
        for b, n in enumerate(lengths):
            x[b, n:] = 0  # zero padding, as the stores hold it
        return x

    return {
        "input_ids": ids, "token_type_ids": torch.zeros(B, L, dtype=torch.int32), "attention_mask": att,
        "audio": frames(TA, cm["audioDim"], audio_lengths), "video": frames(TV, cm["videoDim"], video_lengths),
        "audio_lengths": torch.tensor(audio_lengths, dtype=torch.int32),
        "video_lengths": torch.tensor(video_lengths, dtype=torch.int32),
        "mask_pos": mask_pos,
        "targets": torch.round((torch.rand(B, generator=gen) * 6 - 3) * 1000) / 1000,
    }


def independent_bert(sd, batch, bc):
    """The contract's BERT written out from docs/model.md, from the state dict alone."""
    g = lambda n: sd["bert." + n]  # noqa: E731
    ids, tt = batch["input_ids"].long(), batch["token_type_ids"].long()
    n_b, n_l = ids.shape
    h, nh = bc["hidden_size"], bc["num_attention_heads"]
    dh, eps = h // nh, bc["layer_norm_eps"]

    def ln(x, p):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * g(p + ".weight") + g(p + ".bias")

    def lin(x, p):
        return x @ g(p + ".weight").T + g(p + ".bias")

    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.token_type_embeddings.weight")[tt] \
        + g("embeddings.position_embeddings.weight")[torch.arange(n_l)][None]
    x = ln(x, "embeddings.LayerNorm")
    bias = (1 - batch["attention_mask"].to(x.dtype))[:, None, None, :] * ref.F32_MIN
    for l in range(bc["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        heads = lambda t: t.view(n_b, n_l, nh, dh).transpose(1, 2)  # noqa: E731
        q, k, v = (heads(lin(x, p + "attention.self." + m)) for m in ("query", "key", "value"))
        s = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias
        ctx = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(n_b, n_l, h)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        i = lin(x, p + "intermediate.dense")
        i = 0.5 * i * (1 + torch.erf(i / math.sqrt(2)))
        x = ln(lin(i, p + "output.dense") + x, p + "output.LayerNorm")
    return x


def loss_of(model, batch):
    out = model(batch)
    return ref.l1_loss(out["prediction"], batch["targets"]), out


def finite_difference_check(model, batch, grads, names):
    worst = 0.0
    params = dict(model.named_parameters())
    for name in names:
        p = params[name]
        flat = p.data.view(-1)
        # Hugging Face's word embedding has padding_idx = pad_token_id: its row gets no gradient
        # (not the true derivative), so finite differences there are skipped; checked to be 0 below.
        first = p.shape[1] if name.endswith("word_embeddings.weight") else 0
        if first:
            assert (grads[name][0] == 0).all(), "pad row of the word embedding has a gradient"
        for idx in (first, flat.numel() // 2, flat.numel() - 1):
            old = flat[idx].item()
            h = 1e-6 * max(1.0, abs(old))
            with torch.no_grad():
                flat[idx] = old + h
                lp = loss_of(model, batch)[0].item()
                flat[idx] = old - h
                lm = loss_of(model, batch)[0].item()
                flat[idx] = old
            fd = (lp - lm) / (2 * h)
            ad = grads[name].view(-1)[idx].item()
            err = abs(fd - ad) / max(1e-6, abs(fd) + abs(ad))
            worst = max(worst, err)
            assert err < 1e-5, f"finite differences disagree for {name}[{idx}]: fd {fd} autograd {ad}"
    return worst


def build_case(name, seed, changes, audio_lengths, video_lengths):
    c = case_config(changes)
    torch.manual_seed(seed)
    model = ref.SKESLModel(c)
    randomise(model)
    names = list(model.state_dict().keys())
    assert names == expected_names(c), f"{name}: state_dict names differ from docs/model.md"
    gen = torch.Generator().manual_seed(seed * 1000 + 7)
    batch = make_batch(c, audio_lengths, video_lengths, gen)

    # The float32 weights and inputs are the ground truth; compute everything in float64 from them.
    weights32 = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    model = model.double()
    batch64 = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    model.eval()  # all dropouts are 0 anyway
    loss, out = loss_of(model, batch64)
    pred, tgt = out["prediction"].detach(), batch64["targets"]
    assert (pred - tgt).abs().min() > 1e-3, f"{name}: a prediction is too close to its target"
    trainable = model.trainable_named_parameters()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainable}

    # Checks of the reference itself.
    hf = ref.hf_bert(c["bert"]).double()
    hf.load_state_dict({k[len("bert."):]: v for k, v in model.state_dict().items() if k.startswith("bert.")})
    hf_out = hf(input_ids=batch["input_ids"].long(), token_type_ids=batch["token_type_ids"].long(),
                attention_mask=batch["attention_mask"].long()).last_hidden_state
    mine = independent_bert(model.state_dict(), batch64, c["bert"])
    d_hf = (hf_out - out["bert_last_hidden"]).abs().max().item()
    d_ind = (mine - out["bert_last_hidden"]).abs().max().item()
    assert d_hf < 1e-12 and d_ind < 1e-10, f"{name}: BERT mismatch hf {d_hf} independent {d_ind}"
    fd_names = [n for n, _ in trainable if n.endswith(("query.weight", "LayerNorm.weight", "word_embeddings.weight",
                                                      "ln_modality.weight", "k.weight", "cma_v.v.bias",
                                                      "fc.bias", "fc1.weight"))][:8]
    fd_err = finite_difference_check(model, batch64, grads, fd_names)

    # One Adam step from these gradients (float64).
    params = [p for _, p in trainable]
    opt = torch.optim.Adam(params, **ADAM)
    opt.step()
    stepped = {n: p.detach().clone() for n, p in trainable}
    return c, weights32, batch, out, loss.detach(), grads, stepped, {"bert_hf": d_hf, "bert_independent": d_ind,
                                                                    "fd_rel": fd_err, "fd_params": len(fd_names)}


def write_case(path, c, weights, batch, out, loss, grads, stepped):
    f32 = lambda t: t.detach().float().numpy()  # noqa: E731
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f.attrs["config_json"] = json.dumps(c)
        f.attrs["adam_lr"] = ADAM["lr"]
        f.attrs["adam_beta1"], f.attrs["adam_beta2"] = ADAM["betas"]
        f.attrs["adam_eps"] = ADAM["eps"]
        for n, t in weights.items():
            put(f, f"weights/{n}", f32(t))
        for n, t in batch.items():
            put(f, f"batch/{n}", t.numpy())
        for n in ("bert_last_hidden", "encoder_out", "prediction"):
            if n in out:
                put(f, f"outputs/{n}", f32(out[n]))
        f.create_dataset("outputs/loss", data=f32(loss.reshape(1)))
        for n, t in grads.items():
            put(f, f"grads/{n}", f32(t))
        for n, t in stepped.items():
            put(f, f"adam_step/{n}", f32(t))


# ---- optimiser, clipping and schedule reference (optim.h5) ----

OPT_SHAPES = {"p0": (5, 4), "p1": (6,), "p2": (2, 3, 2)}
OPT_CASES = {  # name -> (optimizer class, kwargs, per-parameter group lr or None)
    "adam": ("Adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}, None),
    "adam_wd": ("Adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}, None),
    "adamw": ("AdamW", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}, None),
    "adam_groups": ("Adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                    {"p0": 5e-6, "p1": 5e-6, "p2": 1e-4}),
    "sgd": ("SGD", {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}, None),
    "sgd_momentum": ("SGD", {"lr": 1e-2, "momentum": 0.9, "dampening": 0.0, "nesterov": False,
                             "weight_decay": 0.0}, None),
    "sgd_nesterov": ("SGD", {"lr": 1e-2, "momentum": 0.9, "dampening": 0.0, "nesterov": True,
                             "weight_decay": 0.0}, None),
}
STEPS = 3


def write_optim(path):
    gen = torch.Generator().manual_seed(2024)
    init = {n: (0.5 * torch.randn(s, generator=gen)).float().double() for n, s in OPT_SHAPES.items()}
    grads = [{n: torch.randn(s, generator=gen).float().double() for n, s in OPT_SHAPES.items()}
             for _ in range(STEPS)]
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f.attrs["steps"] = STEPS
        f.attrs["param_names"] = json.dumps(list(OPT_SHAPES))
        for n, t in init.items():
            f.create_dataset(f"params/{n}", data=t.numpy())
        for s, g in enumerate(grads, 1):
            for n, t in g.items():
                f.create_dataset(f"grads/step{s}/{n}", data=t.numpy())
        for case, (cls, kw, group_lrs) in OPT_CASES.items():
            params = {n: t.clone().requires_grad_(True) for n, t in init.items()}
            if group_lrs is None:
                opt = getattr(torch.optim, cls)(list(params.values()), **kw)
            else:
                groups = [{"params": [params[n] for n in params if group_lrs[n] == lr], "lr": lr}
                          for lr in sorted(set(group_lrs.values()))]
                opt = getattr(torch.optim, cls)(groups, **kw)
            grp = f.create_group(f"results/{case}")
            grp.attrs["optimizer"] = cls
            for k, v in kw.items():
                if k == "betas":
                    grp.attrs["beta1"], grp.attrs["beta2"] = v
                else:
                    grp.attrs[k] = int(v) if isinstance(v, bool) else v  # no HDF5 bool enums
            if group_lrs is not None:
                grp.attrs["group_lrs_json"] = json.dumps(group_lrs)
            for s, g in enumerate(grads, 1):
                for n, p in params.items():
                    p.grad = g[n].clone()
                opt.step()
                for n, p in params.items():
                    grp.create_dataset(f"step{s}/{n}", data=p.detach().numpy())

        # clip_grad_norm_(max_norm 1.0): one set that is clipped, one that is left alone.
        for case, scale in (("clipped", 1.0), ("unclipped", 0.05)):
            gin = {n: (scale * torch.randn(s, generator=gen)).float().double() for n, s in OPT_SHAPES.items()}
            ps = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in OPT_SHAPES.values()]
            for p, n in zip(ps, gin):
                p.grad = gin[n].clone()
            total = torch.nn.utils.clip_grad_norm_(ps, max_norm=1.0)
            grp = f.create_group(f"clip/{case}")
            grp.attrs["max_norm"] = 1.0
            grp.attrs["total_norm"] = float(total)
            for p, n in zip(ps, gin):
                grp.create_dataset(f"in/{n}", data=gin[n].numpy())
                grp.create_dataset(f"out/{n}", data=p.grad.numpy())
            assert (total > 1.0) == (case == "clipped"), (case, float(total))

        # CosineAnnealingLR learning rates, stepped once per epoch.
        for case, eta_min in (("cosine_eta0", 0.0), ("cosine_eta1e-6", 1e-6)):
            p = torch.zeros(1, requires_grad=True)
            opt = torch.optim.Adam([p], lr=1e-4)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=eta_min)
            lrs = [opt.param_groups[0]["lr"]]
            for _ in range(100):
                opt.step()
                sched.step()
                lrs.append(opt.param_groups[0]["lr"])
            closed = [eta_min + (1e-4 - eta_min) * (1 + math.cos(math.pi * e / 20)) / 2 for e in range(101)]
            drift = max(abs(a - b) for a, b in zip(lrs, closed))
            ds = f.create_dataset(f"schedule/{case}", data=np.array(lrs, dtype=np.float64))
            ds.attrs["base_lr"], ds.attrs["T_max"], ds.attrs["eta_min"] = 1e-4, 20, eta_min
            ds.attrs["max_abs_diff_from_closed_form"] = drift
            print(f"optim: {case} recursive vs closed form max |diff| {drift:.3e}")


def reread_check(path):
    """Rebuilds the model from the file alone (config_json + weights) and recomputes its outputs."""
    with h5py.File(path, "r") as f:
        c = json.loads(f.attrs["config_json"])
        model = ref.SKESLModel(c).double()
        sd = {n: torch.from_numpy(f["weights"][n][()]).double() for n in f["weights"]}
        model.load_state_dict(sd, strict=True)
        batch = {n: torch.from_numpy(f["batch"][n][()]) for n in f["batch"]}
        batch = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
        loss, out = loss_of(model, batch)
        loss.backward()
        worst = abs(loss.item() - float(f["outputs/loss"][0]))
        for n in f["outputs"]:
            if n != "loss":
                worst = max(worst, float(np.abs(out[n].detach().numpy() - f["outputs"][n][()]).max()))
        trainable = dict(model.trainable_named_parameters())
        assert sorted(trainable) == sorted(f["grads"]) == sorted(f["adam_step"]), path
        for n, p in trainable.items():
            worst = max(worst, float(np.abs(p.grad.numpy() - f["grads"][n][()]).max()))
    assert worst < 1e-5, f"{path}: re-read mismatch {worst}"
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                  "Tests", "Fixtures", "model"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for name, (seed, changes, al, vl) in CASES.items():
        c, w, batch, out, loss, grads, stepped, checks = build_case(name, seed, changes, al, vl)
        path = os.path.join(args.out, name + ".h5")
        write_case(path, c, w, batch, out, loss, grads, stepped)
        checks["reread"] = reread_check(path)
        print(f"{name}: loss {loss.item():.6f} prediction {out['prediction'].detach().numpy().round(4).tolist()} "
              f"checks {checks} -> {path} ({os.path.getsize(path)} bytes)")
    path = os.path.join(args.out, "optim.h5")
    write_optim(path)
    print(f"optim -> {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
