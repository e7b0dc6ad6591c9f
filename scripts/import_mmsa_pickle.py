#!/usr/bin/env python3
"""Import an MMSA/SKESL pickle ({split: {raw_text, audio, video|vision, labels|regression_labels, ...}})
into a skesl feature store (docs/feature-store.md, schema version 1).

Usage: import_mmsa_pickle.py DATA.pkl OUT_DIR [--audio-frames 400] [--video-frames 55]
       [--samples-per-shard 5000] [--replace-nonfinite] [--overwrite] [--name NAME]

True lengths come from audio_lengths / vision_lengths (or video_lengths) when the pickle has
them, else from the last frame that is not all zeros. Features are padded with zeros or
truncated (first frames kept) to the store's frames. Needs numpy and h5py only.
"""
import argparse, json, os, pickle, sys, zlib

import h5py
import numpy as np

SCHEMA_VERSION = 1
FORMAT = "skesl-feature-store"
SPLITS = {"train": 0, "valid": 1, "val": 1, "dev": 1, "validation": 1, "test": 2}
SPLIT_NAMES = ["train", "valid", "test"]
FEATURE_CHUNK_BYTES = 16 << 10   # as StoreLayout.featureChunkBytes
META_CHUNK_ROWS = 1024           # as StoreLayout.metaChunkRows


def fail(msg):
    sys.exit(f"import_mmsa_pickle: {msg}")


def pick(d, names, what, split):
    for n in names:
        if n in d:
            return d[n]
    fail(f"split '{split}' has no {what} (looked for keys {', '.join(names)})")


def labels_of(d, split):
    v = pick(d, ["labels", "regression_labels", "label"], "labels", split)
    if isinstance(v, dict):
        v = v.get("M", next(iter(v.values())))
    return np.asarray(v, dtype=np.float32).reshape(-1)


def true_lengths(feats, given):
    if given is not None:
        return np.asarray(given, dtype=np.int64).reshape(-1)
    nz = np.abs(feats).sum(axis=2) != 0
    idx = np.arange(feats.shape[1])[None, :]
    return np.where(nz, idx + 1, 0).max(axis=1)


def fit(feats, lengths, frames, path, kind, ids, replace):
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 3:
        fail(f"{path}: {kind} has shape {feats.shape}; expected [samples, frames, features]")
    bad = ~np.isfinite(feats)
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        if not replace:
            fail(f"{path}: {kind} of sample {i} (\"{ids[i]}\") holds NaN/Inf; fix the data or pass --replace-nonfinite")
        feats = np.where(bad, 0, feats)
    n, t, d = feats.shape
    out = np.zeros((n, frames, d), dtype=np.float32)
    keep = np.minimum(np.minimum(lengths, t), frames)
    for i in range(n):
        out[i, :keep[i]] = feats[i, :keep[i]]
    return out, keep.astype(np.int32), int(bad.sum())


def file_crc32(path):
    crc, size = 0, 0
    with open(path, "rb") as f:
        while True:
            b = f.read(4 << 20)
            if not b:
                break
            crc = zlib.crc32(b, crc)
            size += len(b)
    return format(crc & 0xFFFFFFFF, "08x"), size


def write_shard(path, index, offset, rows, chunk_bytes=FEATURE_CHUNK_BYTES):
    n = len(rows["ids"])
    aT, aD = rows["audio"].shape[1:]
    vT, vD = rows["video"].shape[1:]
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        def meta(name, data, dtype):
            f.create_dataset(name, data=np.asarray(data, dtype=dtype), chunks=(META_CHUNK_ROWS,), maxshape=(None,), fletcher32=True)
        f.create_dataset("utterance_id", data=rows["ids"], dtype=s, chunks=(META_CHUNK_ROWS,), maxshape=(None,))
        f.create_dataset("transcript", data=rows["text"], dtype=s, chunks=(META_CHUNK_ROWS,), maxshape=(None,))
        for name, T, D in (("audio", aT, aD), ("video", vT, vD)):
            crows = max(1, chunk_bytes // (4 * T * D))
            f.create_dataset(name, data=rows[name], chunks=(crows, T, D), maxshape=(None, T, D), fletcher32=True)
        # One row per chunk: record each row's chunk address, as skesl's writer does, so
        # that the loader can copy rows out of a mapping of the file.
        f.flush()
        for name in ("audio", "video"):
            d = f[name]
            if d.chunks[0] == 1 and n > 0:
                addr = [d.id.get_chunk_info_by_coord((i, 0, 0)).byte_offset for i in range(n)]
                f.create_dataset("chunk_index/" + name, data=np.asarray(addr, dtype=np.uint64))
        meta("audio_length", rows["audio_length"], np.int32)
        meta("video_length", rows["video_length"], np.int32)
        meta("label", rows["label"], np.float32)
        meta("split", rows["split"], np.uint8)
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = np.int32(SCHEMA_VERSION)
        f.attrs["shard_index"] = np.int32(index)
        f.attrs["global_offset"] = np.int64(offset)
        f.attrs["samples"] = np.int64(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pickle")
    ap.add_argument("out")
    ap.add_argument("--audio-frames", type=int, default=400)
    ap.add_argument("--video-frames", type=int, default=55)
    ap.add_argument("--samples-per-shard", type=int, default=5000)
    ap.add_argument("--chunk-bytes", type=int, default=FEATURE_CHUNK_BYTES,
                    help="feature chunks hold as many samples as fit this many bytes (at least one)")
    ap.add_argument("--replace-nonfinite", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--name", default=None)
    a = ap.parse_args()
    if a.audio_frames < 1 or a.video_frames < 1 or a.samples_per_shard < 1:
        fail("--audio-frames, --video-frames and --samples-per-shard must be at least 1")
    try:
        with open(a.pickle, "rb") as f:
            data = pickle.load(f)
    except Exception as e:
        fail(f"{a.pickle}: cannot read the pickle ({e})")
    if not isinstance(data, dict) or not any(k in SPLITS for k in data):
        fail(f"{a.pickle}: expected a dict of splits (train/valid/test), found {type(data).__name__} with keys {list(data)[:5] if isinstance(data, dict) else ''}")
    manifest_path = os.path.join(a.out, "manifest.json")
    if os.path.exists(manifest_path) and not a.overwrite:
        fail(f"{a.out}: a store exists there already; choose another directory or pass --overwrite")
    os.makedirs(a.out, exist_ok=True)

    cols = {k: [] for k in ("ids", "text", "audio", "audio_length", "video", "video_length", "label", "split")}
    replaced = 0
    for split in sorted((k for k in data if k in SPLITS), key=lambda k: SPLITS[k]):
        d = data[split]
        text = [str(t) for t in pick(d, ["raw_text", "text"], "raw_text", split)]
        n = len(text)
        ids = [str(i) for i in d["id"]] if "id" in d else [f"{split}-{i}" for i in range(n)]
        audio = np.asarray(pick(d, ["audio"], "audio", split))
        video = np.asarray(pick(d, ["video", "vision"], "video", split))
        labels = labels_of(d, split)
        for what, arr in (("audio", audio), ("video", video), ("labels", labels), ("ids", ids)):
            if len(arr) != n:
                fail(f"{a.pickle}: split '{split}' has {n} texts but {len(arr)} {what}")
        al = true_lengths(audio, d.get("audio_lengths"))
        vl = true_lengths(video, d.get("vision_lengths", d.get("video_lengths")))
        A, al, r1 = fit(audio, al, a.audio_frames, a.pickle, f"{split} audio", ids, a.replace_nonfinite)
        V, vl, r2 = fit(video, vl, a.video_frames, a.pickle, f"{split} video", ids, a.replace_nonfinite)
        replaced += r1 + r2
        cols["ids"] += ids; cols["text"] += text
        cols["audio"].append(A); cols["video"].append(V)
        cols["audio_length"].append(al); cols["video_length"].append(vl)
        cols["label"].append(labels); cols["split"].append(np.full(n, SPLITS[split], np.uint8))
    for k in ("audio", "video", "audio_length", "video_length", "label", "split"):
        cols[k] = np.concatenate(cols[k])
    for old in os.listdir(a.out):
        if old.startswith("shard-") and old.endswith(".h5"):
            os.remove(os.path.join(a.out, old))

    total = len(cols["ids"])
    shards, offset, index = [], 0, 0
    while offset < total:
        end = min(offset + a.samples_per_shard, total)
        rows = {k: v[offset:end] for k, v in cols.items()}
        name = f"shard-{index:05d}.h5"
        path = os.path.join(a.out, name)
        write_shard(path, index, offset, rows, a.chunk_bytes)
        crc, size = file_crc32(path)
        shards.append({"file": name, "samples": end - offset, "bytes": size, "crc32": crc})
        offset, index = end, index + 1
    splits = {n: int((cols["split"] == c).sum()) for c, n in enumerate(SPLIT_NAMES)}
    manifest = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION,
        "name": a.name or os.path.splitext(os.path.basename(a.pickle))[0],
        "features": {"audio_frames": a.audio_frames, "audio_dim": int(cols["audio"].shape[2]),
                     "video_frames": a.video_frames, "video_dim": int(cols["video"].shape[2]),
                     "labeled": True},
        "label_range": [-3.0, 3.0], "checksum": "crc32", "total_samples": total,
        "splits": splits, "shards": shards,
        "created_by": f"scripts/import_mmsa_pickle.py {os.path.basename(a.pickle)}",
    }
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    os.replace(manifest_path + ".tmp", manifest_path)
    print(f"imported {total} samples ({splits}) into {len(shards)} shard(s) at {a.out}"
          + (f"; replaced {replaced} NaN/Inf values by 0" if replaced else ""))


if __name__ == "__main__":
    main()
