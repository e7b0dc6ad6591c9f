#!/usr/bin/env python3
"""Writes Tests/Fixtures/audio/speech.m4a and librosa_m4a.h5: a VoxCeleb2-like AAC clip
(mono, 16 kHz, in an MP4 container) of recorded human speech, and what the reference's
librosa 0.9.1 computes from it. libsndfile cannot read MP4, so librosa 0.9.1 falls back to
audioread, whose ffmpeg backend decodes to 16-bit PCM; `skesl extract` decodes such files
with ffmpeg the same way (SKESLExtract/ExtractInputs.swift). ExtractCommandTests compares
the store that `skesl extract` writes from this file with these features.

Run with the librosa venv of scripts/make_audio_fixtures.py and Debian's ffmpeg:

    apt-get install ffmpeg alsa-utils
    .venv-librosa/bin/python scripts/make_m4a_fixture.py
"""
import os
import subprocess
import sys
import tempfile
import warnings

import h5py
import librosa
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "audio")


def main():
    warnings.filterwarnings("ignore")  # librosa 0.9.1 warns that it falls back to audioread
    x, sr = sf.read("/usr/share/sounds/alsa/Front_Right.wav", dtype="float32")
    assert sr == 48000
    x16 = resample_poly(x, 1, 3).astype(np.float32)  # VoxCeleb2's rate: 16 kHz
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "speech16k.wav")
        sf.write(wav, x16, 16000, subtype="PCM_16")
        m4a = os.path.join(OUT, "speech.m4a")
        # -map_metadata -1 and -fflags +bitexact keep the container free of dates and versions.
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav, "-c:a", "aac", "-b:a", "48k",
                        "-ac", "1", "-ar", "16000", "-map_metadata", "-1", "-fflags", "+bitexact",
                        "-flags:a", "+bitexact", m4a], check=True)
    y, sr = librosa.load(m4a)  # the reference's call: audioread + ffmpeg, then kaiser_best to 22,050 Hz
    hop = 512
    feats = np.concatenate([librosa.feature.zero_crossing_rate(y, hop_length=hop).T,
                            librosa.feature.mfcc(y=y, sr=sr, hop_length=hop, htk=True).T,
                            librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=hop).T], axis=-1).astype(np.float32)
    path = os.path.join(OUT, "librosa_m4a.h5")
    with h5py.File(path, "w", track_order=True) as h:
        h.attrs["librosa"] = librosa.__version__
        h.attrs["ffmpeg"] = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
        h.create_dataset("y", data=y, compression="gzip", shuffle=True)
        h.create_dataset("features", data=feats, compression="gzip", shuffle=True)
    print(f"speech.m4a: {os.path.getsize(os.path.join(OUT, 'speech.m4a'))} bytes; librosa.load: {len(y)} samples at {sr} Hz, "
          f"{feats.shape[0]} frames; wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
