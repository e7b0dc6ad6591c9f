#!/usr/bin/env python3
"""Summarise a skesl checkpoint (docs/checkpoint-format.md) and optionally verify its checksum.

Usage: checkpoint_tool.py CKPT.h5 [--verify]
Needs h5py and numpy only (the project's venv: .venv/bin/python scripts/checkpoint_tool.py ...).
"""
import argparse, json, sys

import h5py
import numpy as np

STATE = ("step", "cursor_epoch", "cursor_position", "epochs_completed", "best_epoch", "best_valid_loss",
         "seed", "world_size", "store_fingerprint", "code_version", "created")


def parameter_order(cfg):
    """Tensor names in the order of skesl's flat parameter buffer (Sources/SKESLModel/Parameters.swift),
    and the index of the first trainable one."""
    b = cfg["bert"]
    names = ["bert.embeddings." + n for n in ("word_embeddings.weight", "position_embeddings.weight",
                                               "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
    for l in range(b["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        names += [p + f"attention.self.{m}.weight" for m in ("query", "key", "value")]
        names += [p + f"attention.self.{m}.bias" for m in ("query", "key", "value")]
        names += [p + n + s for n in ("attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                                      "output.dense", "output.LayerNorm") for s in (".weight", ".bias")]
    trainable_from = len(names) if cfg["freezeBert"] else 0
    if cfg["task"] != "text_only":
        c = cfg["crossmodal"]
        for l in range(1 if c["shared"] else c["layers"]):
            p = f"crossmodal.layers.{l}."
            for m in ("cma_a", "cma_v"):
                names += [p + m + n for n in (".ln_text.weight", ".ln_text.bias", ".ln_modality.weight",
                                              ".ln_modality.bias", ".q.weight", ".q.bias", ".k.weight", ".v.weight",
                                              ".k.bias", ".v.bias", ".out.weight", ".out.bias")]
            names += [p + n for n in ("ln.weight", "ln.bias", "fc.weight", "fc.bias")]
    names += ["head.fc1.weight", "head.fc1.bias", "head.fc2.weight", "head.fc2.bias"]
    return names, trainable_from


M64 = (1 << 64) - 1


def checksum(buffers):
    """Checkpoint.checksum: each buffer (float32) hashed as little-endian 32-bit words."""
    h = 0x9E3779B97F4A7C15
    for a in buffers:
        w = np.ascontiguousarray(a, dtype="<f4").view("<u4")
        n = len(w)
        pairs = (w[0:n - 1:2].astype(np.uint64) | (w[1:n:2].astype(np.uint64) << np.uint64(32))).tolist()
        for v in pairs:
            h = ((h ^ v) * 0xFF51AFD7ED558CCD) & M64
            h ^= h >> 29
        if n % 2:
            h = ((h ^ int(w[-1])) * 0xC4CEB9FE1A85EC53) & M64
            h ^= h >> 31
        h = ((h ^ n) * 0xFF51AFD7ED558CCD) & M64
    return "%016x" % h


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--verify", action="store_true", help="recompute the checksum (a few seconds per 10 M parameters)")
    a = ap.parse_args()
    try:
        f = h5py.File(a.checkpoint, "r")
    except OSError as e:
        sys.exit(f"checkpoint_tool: {a.checkpoint}: cannot open as HDF5 ({e})")
    with f:
        if f.attrs.get("format") != "skesl-checkpoint":
            sys.exit(f"checkpoint_tool: {a.checkpoint}: not a skesl checkpoint (no format attribute 'skesl-checkpoint')")
        cfg = json.loads(f.attrs["config_json"])
        names, t0 = parameter_order(cfg)
        stored = set(f["weights"].keys())
        if set(names) != stored:
            sys.exit(f"checkpoint_tool: {a.checkpoint}: tensors differ from the model config "
                     f"(missing {sorted(set(names) - stored)[:5]}, extra {sorted(stored - set(names))[:5]})")
        count = sum(f["weights"][n].size for n in names)
        trainable = sum(f["weights"][n].size for n in names[t0:])
        print(f"{a.checkpoint}: task {cfg['task']}, {len(names)} tensors, {count} parameters ({trainable} trainable)")
        for k in STATE:
            v = f.attrs[k]
            print(f"  {k}: {v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, 'item') else v}")
        if "optimizer" in f:
            o = f["optimizer"].attrs
            print(f"  optimizer: {o['optimizer_kind']}, step {o['optimizer_step'].item()}")
        if a.verify:
            cat = lambda g, ns: np.concatenate([f[g][n][()].ravel() for n in ns])
            buffers = [cat("weights", names)]
            if "optimizer" in f:
                buffers += [cat("optimizer/exp_avg", names[t0:]), cat("optimizer/exp_avg_sq", names[t0:])]
            have, want = checksum(buffers), f.attrs["checksum"]
            if have != want:
                sys.exit(f"checkpoint_tool: {a.checkpoint}: checksum mismatch (stored {want}, computed {have}): the file is damaged")
            print(f"  checksum {have}: ok")


if __name__ == "__main__":
    main()
