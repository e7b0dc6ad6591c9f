#!/usr/bin/env python3
"""How far today's librosa is from the reference's 0.9.1 on the parity fixtures' inputs:
recomputes the reference's features with the installed librosa (e.g. 0.11, whose load and
constant-Q transform resample with soxr_hq instead of resampy) and compares them with the
0.9.1 features stored in Tests/Fixtures/audio/librosa_features.h5. For docs/feature-store.md.

    python3 -m venv .venv-librosa11 && .venv-librosa11/bin/pip install librosa==0.11.0 h5py
    .venv-librosa11/bin/python scripts/compare_librosa_versions.py
"""
import os
import warnings

import h5py
import librosa
import numpy as np

warnings.filterwarnings("ignore")
PATH = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "audio", "librosa_features.h5")


def features(y, sr):
    f0 = librosa.feature.zero_crossing_rate(y, hop_length=512).T
    mfcc = librosa.feature.mfcc(y=y, sr=sr, hop_length=512, htk=True).T
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=512).T
    return np.concatenate([f0, mfcc, chroma], axis=-1)


def main():
    print(f"librosa {librosa.__version__} against the fixtures' librosa 0.9.1 (per case: max |diff| of ZCR, MFCC in dB, chroma)")
    worst = np.zeros(3)
    with h5py.File(PATH, "r") as h:
        for name, g in h["cases"].items():
            x, sr = g["input"][()], g.attrs["sr"]
            y = librosa.resample(x, orig_sr=sr, target_sr=22050) if sr != 22050 else x  # load's default res_type
            new, ref = features(y, 22050), g["features"][()]
            if new.shape != ref.shape:
                print(f"  {name}: frames {new.shape[0]} vs {ref.shape[0]}")
                continue
            d = np.array([np.abs(new[:, 0] - ref[:, 0]).max(), np.abs(new[:, 1:21] - ref[:, 1:21]).max(), np.abs(new[:, 21:] - ref[:, 21:]).max()])
            worst = np.maximum(worst, d)
            print(f"  {name} ({g.attrs['description']}, {sr:.0f} Hz): zcr {d[0]:.4f}, mfcc {d[1]:.3f} dB, chroma {d[2]:.3f}")
    print(f"  worst: zcr {worst[0]:.4f}, mfcc {worst[1]:.3f} dB, chroma {worst[2]:.3f}")


if __name__ == "__main__":
    main()
