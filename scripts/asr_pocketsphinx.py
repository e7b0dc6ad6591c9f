#!/usr/bin/env python3
"""Prints the transcript of one audio file with PocketSphinx's bundled US-English model
(offline; `scripts/setup --asr` installs pocketsphinx from PyPI into .venv).

For `skesl extract --asr-command '.venv/bin/python scripts/asr_pocketsphinx.py {audio}'`.
Reads 16-bit PCM WAV (any rate and channel count: mixed to mono and resampled to 16 kHz by
FFT) and, when ffmpeg is installed, anything ffmpeg decodes. Prints one line (possibly empty,
which extract counts and skips). PocketSphinx is a weak recogniser; for real corpora plug in a
stronger engine the same way (docs/feature-store.md, "Transcripts").
"""
import os
import shutil
import subprocess
import sys
import tempfile
import wave

import numpy as np


def read_pcm16(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV; this helper reads 16-bit PCM (or install ffmpeg)")
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
        return x.reshape(-1, w.getnchannels()).mean(axis=1), w.getframerate()


def load_16k(path):
    try:
        x, sr = read_pcm16(path)
    except (wave.Error, ValueError, EOFError) as e:
        ff = shutil.which("ffmpeg")
        if not ff:
            raise SystemExit(f"{path}: {e}; install ffmpeg to transcribe other formats")
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "a.wav")
            subprocess.run([ff, "-nostdin", "-v", "error", "-i", path, "-ac", "1", "-ar", "16000", "-acodec", "pcm_s16le", out], check=True)
            x, sr = read_pcm16(out)
    if sr != 16000 and len(x) > 0:
        n = int(round(len(x) * 16000 / sr))
        X = np.fft.rfft(x)
        Y = np.zeros(n // 2 + 1, dtype=complex)
        k = min(len(X), len(Y))
        Y[:k] = X[:k]
        x = np.fft.irfft(Y, n) * (n / len(x))
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: asr_pocketsphinx.py AUDIO")
    from pocketsphinx import Decoder
    pcm = load_16k(sys.argv[1])
    d = Decoder(samprate=16000, loglevel="FATAL")
    d.start_utt()
    d.process_raw(pcm.tobytes(), full_utt=True)
    d.end_utt()
    h = d.hyp()
    print(h.hypstr if h is not None else "")


if __name__ == "__main__":
    main()
