#!/usr/bin/env python3
"""Benchmark of `skesl extract`'s audio features against the reference's librosa calls, on
the same files in one run, one core each; then weak scaling of `skesl extract` over 1 and 2
MPI ranks. Prints every figure it compares. Not a test (figures depend on the machine).

Needs librosa 0.9.1 + resampy 0.2.2 (see scripts/make_audio_fixtures.py), espeak-ng, and a
built skesl (release preferred):

    swift build -c release
    .venv-librosa/bin/python scripts/bench_extract.py [--files 60] [--rounds 3]

Corpus (bench-out/extract-corpus): espeak-ng sentences at 16 kHz, 16-bit (VoxCeleb's rate
and format), several voices, 2-6 s each, with transcripts; plus alsa-utils' recorded speech
at 48 kHz.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

for v in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"]:
    os.environ[v] = "1"  # one core for librosa too (set before numpy/numba load)

import warnings  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
WORDS = ["wonderful", "terrible", "boring", "brilliant", "awful", "pleasant", "sad", "great", "fine", "horrible"]
SUBJECTS = ["the movie", "this actor", "the plot", "her voice", "the ending", "that scene", "the music", "his speech"]
VOICES = ["en-us", "en+f3", "en-gb+m3", "en+m1", "en-us+f2"]


def make_corpus(d, n):
    import soundfile as sf
    from scipy.signal import resample_poly
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(6)
    for i in range(n):
        wav = os.path.join(d, f"utt{i:04d}.wav")
        if os.path.exists(wav):
            continue
        k = 1 + i % 3
        text = " and ".join(f"{SUBJECTS[rng.integers(len(SUBJECTS))]} was {WORDS[rng.integers(len(WORDS))]}" for _ in range(k))
        tmp = wav + ".22k.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", str(140 + 10 * (i % 4)), "-w", tmp, text], check=True)
        y, sr = sf.read(tmp, dtype="float64")
        os.remove(tmp)
        sf.write(wav, resample_poly(y, 160, 441), 16000, subtype="PCM_16")
        with open(os.path.join(d, f"utt{i:04d}.txt"), "w") as f:
            f.write(text + "\n")
    for name in ["Front_Center", "Front_Left", "Rear_Right", "Side_Left"]:
        dst = os.path.join(d, f"alsa_{name}.wav")
        if not os.path.exists(dst):
            shutil.copy(f"/usr/share/sounds/alsa/{name}.wav", dst)
            with open(os.path.join(d, f"alsa_{name}.txt"), "w") as f:
                f.write(name.replace("_", " ").lower() + "\n")


def librosa_seconds(files, rounds):
    import librosa
    warnings.filterwarnings("ignore")

    def one(p):  # the reference's get_one_audio_embedding, before padding
        y, sr = librosa.load(p)
        f0 = librosa.feature.zero_crossing_rate(y, hop_length=512).T
        mfcc = librosa.feature.mfcc(y=y, sr=sr, hop_length=512, htk=True).T
        cqt = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=512).T
        return np.concatenate([f0, mfcc, cqt], axis=-1)

    for p in files:  # untimed: numba's JIT, caches
        one(p)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for p in files:
            one(p)
        best = min(best, time.perf_counter() - t)
    return best, librosa.__version__


def skesl_binary():
    for b in ["release", "debug"]:
        p = os.path.join(ROOT, ".build", b, "skesl")
        if os.path.exists(p):
            return p, b
    raise SystemExit("build skesl first: swift build -c release")


def run_extract(binary, corpus, out, np_):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [binary, "extract", "--input", corpus, "--out", out, "--files-per-shard", "50", "--overwrite"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if np_ > 1:
        cmd = ["mpirun", "--oversubscribe", "-np", str(np_), "--bind-to", "core"] + cmd
    t = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    rep = json.load(open(os.path.join(out, "extract-report.json")))
    return wall, rep, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weak-copies", type=int, default=4, help="copies of the corpus per rank for weak scaling")
    a = ap.parse_args()
    corpus = os.path.join(ROOT, "bench-out", "extract-corpus")
    make_corpus(corpus, a.files)
    files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus) if f.endswith(".wav"))
    binary, build = skesl_binary()

    lib, ver = librosa_seconds(files, a.rounds)
    r = subprocess.run([binary, "bench-audio", "--input", corpus, "--rounds", str(a.rounds)], capture_output=True, text=True, check=True)
    line = r.stdout.strip().splitlines()[-1]
    ms = float(line.split(" = ")[1].split(" ms/file")[0])
    print(f"corpus: {len(files)} files in {corpus} (espeak-ng at 16 kHz, alsa speech at 48 kHz)")
    print(f"librosa {ver} (load + zero_crossing_rate + mfcc + chroma_cqt), one core: best of {a.rounds}: "
          f"{lib:.3f} s = {1000 * lib / len(files):.2f} ms/file")
    print(f"skesl ({build} build), one core: {line}")
    print(f"speed ratio per core: {1000 * lib / len(files) / ms:.1f}x")

    # Weak scaling: each rank gets the same work (weak-copies copies of the corpus).
    weak = os.path.join(ROOT, "bench-out", "extract-weak")
    for ranks in (1, 2):
        d = os.path.join(weak, f"in{ranks}")
        if not os.path.isdir(d):
            for c in range(a.weak_copies * ranks):
                sub = os.path.join(d, f"copy{c}")
                os.makedirs(sub)
                for f in os.listdir(corpus):
                    os.link(os.path.join(corpus, f), os.path.join(sub, f))
    load0 = os.getloadavg()[0]
    w1, rep1, cpu1 = run_extract(binary, os.path.join(weak, "in1"), os.path.join(weak, "out1"), 1)
    w2, rep2, cpu2 = run_extract(binary, os.path.join(weak, "in2"), os.path.join(weak, "out2"), 2)
    print(f"weak scaling: 1 rank {rep1['files']} files in {rep1['seconds']:.2f} s (wall {w1:.2f} s); "
          f"2 ranks {rep2['files']} files in {rep2['seconds']:.2f} s (wall {w2:.2f} s); "
          f"efficiency {100 * rep1['seconds'] / rep2['seconds']:.0f}% (wall {100 * w1 / w2:.0f}%)")
    # CPU seconds of all ranks per file: equal for 1 and 2 ranks when nothing is serialised or
    # duplicated; a wall-clock loss beyond that is other processes taking the cores.
    print(f"CPU per file (all ranks, mpirun included): 1 rank {1000 * cpu1 / rep1['files']:.1f} ms, 2 ranks {1000 * cpu2 / rep2['files']:.1f} ms "
          f"(CPU efficiency {100 * (cpu1 / rep1['files']) / (cpu2 / rep2['files']):.0f}%); "
          f"cores the job got on average: 1 rank {cpu1 / w1:.2f}, 2 ranks {cpu2 / w2:.2f}")
    print(f"machine: {os.cpu_count()} cores; load average {load0:.1f} before the scaling runs, {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    sys.exit(main())
