"""Peer benchmark: PyTorch training steps of the SKESL model at the reference shapes.

Prints JSON lines on stdout: one `env` line (torch version, threads, CPU), one `sgemm` line,
then one line per step kind with ms/step and samples/s:
  pretrain_reference      the reference pretraining step: BERT frozen (requires_grad False) but in
                          train mode (dropout 0.1), encoder over all L rows, head on the [MASK] row
  finetune_reference      fine-tuning: BERT trainable, mean over all L rows, Adam groups 5e-6/5e-6/1e-4
  pretrain_exact_rewrite  same semantics as pretrain_reference: BERT under no_grad, encoder and head
                          on the [MASK] row only, audio/video K and V computed once (shared layers)
  pretrain_cached         pretrain_exact_rewrite from a precomputed BERT [MASK] row per sample
`--check` first verifies in float64 (dropout off) that the rewrite equals the reference step.

Run: .venv/bin/python scripts/bench_torch.py --threads 1 --steps 3 [--check]
"""
import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402

BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
             "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
             "pad_token_id": 0, "hidden_act": "gelu"}


def reference_config(task, freeze, dropout=True):
    p = 0.5 if dropout else 0.0
    bert = dict(BERT_BASE)
    if not dropout:
        bert["hidden_dropout_prob"] = bert["attention_probs_dropout_prob"] = 0.0
    return {"bert": bert,
            "crossmodal": {"layers": 4, "attentionDim": 256, "audioDim": 33, "videoDim": 709, "shared": True,
                           "maskModalityPadding": False, "dropout": p, "layerNormEps": 1e-5},
            "head": {"hidden": 256, "dropout": p}, "task": task, "freezeBert": freeze, "maskedMeanPooling": False}


def make_batch(b, seq=39, ta=400, tv=55, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, seq + 1, (b,), generator=g)
    ids = torch.randint(1000, 30000, (b, seq), generator=g)
    att = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = ids * att
    ids[:, 0] = 101
    mask_pos = torch.stack([torch.randint(1, int(n) - 1, (1,), generator=g)[0] for n in lengths])
    ids[torch.arange(b), mask_pos] = 103
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": att,
            "audio": torch.randn(b, ta, 33, generator=g).to(dtype), "video": torch.randn(b, tv, 709, generator=g).to(dtype),
            "mask_pos": mask_pos, "targets": (torch.rand(b, generator=g) * 6 - 3).to(dtype)}


def encoder_on_rows(model, x, audio, video):
    """The shared cross-modal encoder and pretraining head on rows x [B, H] only.

    Exact: each text row attends only to audio/video (rows never mix) and, with one shared
    parameter set, K and V of each modality are the same in every layer."""
    enc = model.crossmodal
    assert enc.shared and not enc.mask_padding
    layer = enc.layers[0]
    ka, va = layer.cma_a.keys_values(audio)
    kv, vv = layer.cma_v.keys_values(video)
    x = x[:, None, :]
    for _ in range(enc.n):
        y = layer.cma_a.attend(x, ka, va, None) + layer.cma_v.attend(x, kv, vv, None) + x
        x = layer.dropout(layer.fc(layer.ln(y))) + y
    return model.head(x[:, 0])


def mask_rows_of_bert(model, batch):
    with torch.no_grad():
        x0 = model.bert(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                        attention_mask=batch["attention_mask"]).last_hidden_state
    return x0[torch.arange(x0.shape[0]), batch["mask_pos"]]


def step_reference(model, opt, batch):
    opt.zero_grad(set_to_none=True)
    loss = ref.l1_loss(model(batch)["prediction"], batch["targets"])
    loss.backward()
    opt.step()
    return loss


def step_rewrite(model, opt, batch):
    opt.zero_grad(set_to_none=True)
    pred = encoder_on_rows(model, mask_rows_of_bert(model, batch), batch["audio"], batch["video"])
    loss = ref.l1_loss(pred, batch["targets"])
    loss.backward()
    opt.step()
    return loss


def step_cached(model, opt, cached):
    opt.zero_grad(set_to_none=True)
    loss = ref.l1_loss(encoder_on_rows(model, cached["rows"], cached["audio"], cached["video"]), cached["targets"])
    loss.backward()
    opt.step()
    return loss


def check_rewrite(b=4):
    """float64, dropout off: the rewrite's prediction, loss and gradients equal the reference's."""
    torch.manual_seed(1)
    model = ref.SKESLModel(reference_config("pretrain", True, dropout=False)).double().train()
    batch = make_batch(b, seed=5, dtype=torch.float64)
    trainable = model.trainable_named_parameters()
    out_a = model(batch)["prediction"]
    ref.l1_loss(out_a, batch["targets"]).backward()
    grads_a = {n: p.grad.clone() for n, p in trainable}
    model.zero_grad(set_to_none=True)
    out_c = encoder_on_rows(model, mask_rows_of_bert(model, batch), batch["audio"], batch["video"])
    ref.l1_loss(out_c, batch["targets"]).backward()
    d_pred = (out_a - out_c).abs().max().item()
    # Relative to the largest gradient entry overall: key biases have analytically zero gradients.
    scale = max(g.abs().max().item() for g in grads_a.values())
    d_grad = max((p.grad - grads_a[n]).abs().max().item() for n, p in trainable) / scale
    ok = d_pred < 1e-12 and d_grad < 1e-12
    print(json.dumps({"check": "pretrain_exact_rewrite_vs_reference", "dtype": "float64", "batch": b,
                      "max_abs_prediction_diff": d_pred, "max_rel_grad_diff": d_grad, "ok": ok}), flush=True)
    if not ok:
        sys.exit("bench_torch: the rewrite does not match the reference step")


def time_steps(name, fn, batch_size, warmup, steps, threads):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(json.dumps({"bench": name, "threads": threads, "batch": batch_size, "steps": steps,
                      "ms_per_step_median": round(med * 1e3, 2), "ms_per_step_min": round(min(times) * 1e3, 2),
                      "samples_per_s": round(batch_size / med, 3), "ms_each": [round(t * 1e3, 1) for t in times]}),
          flush=True)


def sgemm_rate(threads, reps=5):
    a, b = torch.randn(1248, 768), torch.randn(768, 3072)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"bench": "sgemm", "m": 1248, "k": 768, "n": 3072, "threads": threads,
                      "gflops_best": round(2 * 1248 * 768 * 3072 / best / 1e9, 1)}), flush=True)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--check", action="store_true", help="verify the exact rewrite in float64 first")
    ap.add_argument("--only", default="", help="comma-separated subset of the step kinds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"env": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "cpu": cpu_name(), "cores": os.cpu_count(), "mkl": torch.backends.mkl.is_available()}),
          flush=True)
    if args.check:
        check_rewrite()
    sgemm_rate(args.threads)
    only = set(filter(None, args.only.split(",")))
    want = lambda n: not only or n in only  # noqa: E731
    b = args.batch
    batch = make_batch(b)

    torch.manual_seed(0)
    pre = ref.SKESLModel(reference_config("pretrain", True)).train()
    pre_opt = torch.optim.Adam([p for _, p in pre.trainable_named_parameters()], lr=1e-4)
    if want("pretrain_reference"):
        time_steps("pretrain_reference", lambda: step_reference(pre, pre_opt, batch), b, args.warmup, args.steps,
                   args.threads)
    if want("pretrain_exact_rewrite"):
        time_steps("pretrain_exact_rewrite", lambda: step_rewrite(pre, pre_opt, batch), b, args.warmup, args.steps,
                   args.threads)
    if want("pretrain_cached"):
        cached = {"rows": mask_rows_of_bert(pre, batch), "audio": batch["audio"], "video": batch["video"],
                  "targets": batch["targets"]}
        time_steps("pretrain_cached", lambda: step_cached(pre, pre_opt, cached), b, args.warmup,
                   max(args.steps, 10), args.threads)
    if want("finetune_reference"):
        torch.manual_seed(0)
        fin = ref.SKESLModel(reference_config("finetune", False)).train()
        groups = [{"params": list(fin.bert.parameters()), "lr": 5e-6},
                  {"params": list(fin.crossmodal.parameters()), "lr": 5e-6},
                  {"params": list(fin.head.parameters()), "lr": 1e-4}]
        fin_opt = torch.optim.Adam(groups)
        time_steps("finetune_reference", lambda: step_reference(fin, fin_opt, batch), b, args.warmup, args.steps,
                   args.threads)


if __name__ == "__main__":
    main()
