#!/usr/bin/env python3
"""Write Tests/Fixtures/metrics/*.json: prediction/label cases and the regression
metrics computed the way the MMSA framework does for MOSI/MOSEI (numpy + scikit-learn),
for RegressionMetrics to be checked against.

Conventions reproduced (see docs/metrics-log.md, "Metrics"):
- inputs are float32 (MMSA converts float32 tensors to numpy);
- Acc-7 / Acc-5: clip both to [-3, 3] / [-2, 2], then numpy round (half to even), equal classes;
- Acc-2 has-0: label >= 0 vs prediction >= 0 over all samples, F1 weighted;
- Acc-2 non-0: only samples whose label != 0, label > 0 vs prediction > 0, F1 weighted;
- Corr: np.corrcoef; NaN when either side is constant (written as null);
- non-0 metrics on a set with no non-zero label: MMSA fails there; we write null (NaN).
MMSA rounds its reported figures to 4 decimals; the fixtures keep full precision.

It also writes Tests/Fixtures/metrics/sample-run/metrics.jsonl: the metrics log of a
simulated fine-tuning run (schema of docs/metrics-log.md, written here independently of the
Swift writer), with eval metrics computed by the same reference on synthetic predictions.
The report tests and scripts/screenshot_report.sh read it.

Run: .venv/bin/python scripts/make_metric_fixtures.py
"""
import json
import math
import pathlib
import warnings

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "metrics"


def reference(preds, labels):
    p = np.asarray(preds, dtype=np.float32)
    t = np.asarray(labels, dtype=np.float32)
    out = {"n": int(len(t))}
    out["mae"] = float(np.mean(np.abs(p.astype(np.float64) - t.astype(np.float64))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corr = np.corrcoef(p, t)[0][1]
    out["corr"] = None if np.isnan(corr) else float(corr)
    for name, bound in (("acc7", 3.0), ("acc5", 2.0)):
        cp = np.round(np.clip(p, -bound, bound))
        ct = np.round(np.clip(t, -bound, bound))
        out[name] = float(np.sum(cp == ct) / float(len(t)))
    bt, bp = t >= 0, p >= 0
    out["acc2_has0"] = float(accuracy_score(bt, bp))
    out["f1_has0"] = float(f1_score(bt, bp, average="weighted"))
    keep = t != 0
    out["n_non0"] = int(keep.sum())
    if keep.any():
        nt, np_ = t[keep] > 0, p[keep] > 0
        out["acc2_non0"] = float(accuracy_score(nt, np_))
        out["f1_non0"] = float(f1_score(nt, np_, average="weighted"))
    else:
        out["acc2_non0"] = None
        out["f1_non0"] = None
    return out


def mosi_like_labels(rng, n):
    # MOSI labels are means of annotator scores: many multiples of 0.2, some exact 0.
    return np.round(rng.uniform(-3, 3, n) * 5) / 5


def cases():
    rng = np.random.default_rng(20231)
    t = mosi_like_labels(rng, 200)
    yield "random", "MOSI-like labels, noisy predictions", t + rng.normal(0, 0.9, 200), t

    t = np.array([0, 0, -0.0, 0, 1.2, -1.2, 0.6, -0.6, 0, 2.0, -2.0, 0, 0.4, -0.4])
    p = np.array([0, -0.0, 0.3, -0.3, 0, 0, 0.6, -0.6, 1e-7, -1e-7, 2.0, 0, -0.4, 0.4])
    yield "ties_at_zero", "labels and predictions exactly 0 (and -0)", p, t

    halves = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 2.4999, -0.5001, 0.5001, 1.4999])
    yield "round_half_even", "predictions on .5 boundaries: numpy rounds half to even", \
        halves, np.array([-3, -2, -2, 0, 0, 2, 2, 3, 2, -1, 1, 1], dtype=float)

    t = np.zeros(50)
    yield "all_zero_labels", "every label 0: non-0 metrics and Corr undefined", rng.normal(0, 1, 50), t

    t = mosi_like_labels(rng, 120)
    yield "perfect", "predictions equal labels", t.copy(), t

    t = mosi_like_labels(rng, 80)
    yield "constant_predictions", "constant predictions: Pearson undefined", np.full(80, 0.3), t

    t = mosi_like_labels(rng, 686)
    yield "clipped_large", "MOSI test size, predictions beyond [-3, 3]", t * 1.6 + rng.normal(0, 1.2, 686), t

    t = np.abs(mosi_like_labels(rng, 60)) + 0.2
    yield "one_class_labels", "all labels positive, predictions of both signs", rng.normal(0.5, 1.0, 60), t


def json_number(x):
    # The log's convention for non-finite numbers (a diverged loss).
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def sample_run():
    """Records of a 24-epoch MOSI-like fine-tuning run on 2 ranks (cosine lr, T_max 20)."""
    rng = np.random.default_rng(7)
    epochs, steps_per_epoch, batch, every = 24, 41, 32, 10
    base = {"bert": 5e-6, "cross_modal": 5e-6, "head": 1e-4}
    valid_t = mosi_like_labels(rng, 229)
    test_t = mosi_like_labels(rng, 686)
    t = 1.765e9
    recs = [{"kind": "run_start", "time": t, "run": "mosi-finetune-demo", "phase": "finetune",
             "world_size": 2, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch,
             "config": {"data": {"train": "data/mosi/train.h5", "valid": "data/mosi/valid.h5"},
                        "optimizer": {"name": "adam", "lr": base, "betas": [0.9, 0.999]},
                        "schedule": {"name": "cosine", "t_max": 20}, "seed": 1},
             "versions": {"skesl": "0.1.0", "swift": "6.3.1", "openmpi": "4.1.4"}}]
    step = 0
    for epoch in range(1, epochs + 1):
        factor = (1 + math.cos(math.pi * (epoch - 1) / 20)) / 2   # CosineAnnealingLR, eta_min 0
        lr = {g: v * factor for g, v in base.items()}
        done = 0
        while done < steps_per_epoch:
            n = min(every, steps_per_epoch - done)
            done += n
            step += n
            rate = 40 + rng.normal(0, 2) - (8 if epoch == 7 else 0)
            samples = n * batch - (4 if done == steps_per_epoch else 0)
            t += samples / rate
            loss = 1.25 * math.exp(-epoch / 6) + 0.35 + rng.normal(0, 0.03)
            recs.append({"kind": "train", "time": t, "epoch": epoch, "step": step, "epoch_step": done,
                         "steps": n, "samples": samples, "loss": loss, "lr": lr,
                         "samples_per_s": rate, "skipped": 1 if (epoch, done) == (3, 20) else 0})
        # Predictions improve, then the model overfits: noise is lowest near epoch 10.
        noise = 0.55 + 0.5 * math.exp(-epoch / 3) + 0.012 * max(0, epoch - 10) ** 1.3
        for split, truth in (("valid", valid_t), ("test", test_t)):
            pred = (truth * 0.8 + rng.normal(0, noise, len(truth))).astype(np.float32)
            m = reference(pred, truth)
            t += 4
            recs.append({"kind": "eval", "time": t, "epoch": epoch, "split": split,
                         "loss": float(np.mean(np.abs(pred - truth.astype(np.float32)))),
                         "samples": len(truth), "metrics": m})
        if epoch in (1, 5, 10, 20):
            t += 1
            recs.append({"kind": "checkpoint", "time": t, "epoch": epoch, "step": step,
                         "path": f"checkpoints/epoch-{epoch}.h5", "reason": "snapshot", "bytes": 438_000_000})
    valid = [r for r in recs if r["kind"] == "eval" and r["split"] == "valid"]
    best = min(valid, key=lambda r: (r["loss"], r["epoch"]))["epoch"]
    recs.append({"kind": "run_end", "time": t + 1, "status": "completed", "epochs": epochs, "steps": step,
                 "elapsed_s": t + 1 - recs[0]["time"], "best_epoch": best})
    return recs


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, description, preds, labels in cases():
        p = np.asarray(preds, dtype=np.float32)
        t = np.asarray(labels, dtype=np.float32)
        doc = {
            "name": name,
            "description": description,
            # float(np.float32) is the exact value of the float32, so it reads back exactly.
            "predictions": [float(x) for x in p],
            "labels": [float(x) for x in t],
            "expected": reference(p, t),
        }
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(name, doc["expected"])
    run_dir = OUT / "sample-run"
    run_dir.mkdir(exist_ok=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for r in sample_run():
            r = {k: json_number(v) for k, v in r.items()}
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    print("sample-run: metrics.jsonl")


if __name__ == "__main__":
    main()
