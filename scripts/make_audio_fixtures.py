#!/usr/bin/env python3
"""Writes Tests/Fixtures/audio/: librosa's reference audio features on real speech,
synthesised speech and synthetic signals, for the Swift parity tests (AudioTests).

The reference (SKESL's data/EmoVoxCeleb/get_audio_embedding.py) pins librosa 0.9.1 and
resampy 0.2.2. Run this with those installed, e.g. in a venv of its own:

    apt-get install espeak-ng alsa-utils      # the inputs (scripts/setup installs neither)
    python3 -m venv .venv-librosa
    .venv-librosa/bin/pip install librosa==0.9.1 resampy==0.2.2 'numpy<1.24' 'numba<0.58' h5py soxr
    .venv-librosa/bin/python scripts/make_audio_fixtures.py

Inputs: /usr/share/sounds/alsa/*.wav (alsa-utils: recorded human speech, 48 kHz),
espeak-ng sentences (22,050 Hz; resampled to 16 and 8 kHz here as inputs), and synthetic
signals (tones, a chirp, clipping, near-silence, very short and long clips at 8, 16, 44.1
and 48 kHz). Each case stores its input samples, librosa.load's output (short clips) and
the 33 features per frame. Also prints how far soxr (librosa >= 0.10's default) is from
resampy kaiser_best on real speech, for docs/feature-store.md.
"""
import os
import subprocess
import sys
import tempfile
import warnings

import h5py
import librosa
import numpy as np
import resampy
import soundfile as sf
from scipy.signal import resample_poly

KEEP_Y = {"alsa_Front_Center", "espeak_0_16k", "espeak_1_8k", "tone_440_8k", "clipped_48k", "short_16k", "veryshort_44k1"}
OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "audio")


def reference_features(y, sr):
    """The reference's per-utterance features before padding: ZCR, MFCC (20), chroma (12)."""
    hop = 512
    f0 = librosa.feature.zero_crossing_rate(y, hop_length=hop).T
    mfcc = librosa.feature.mfcc(y=y, sr=sr, hop_length=hop, htk=True).T
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=hop).T
    return np.concatenate([f0, mfcc, chroma], axis=-1).astype(np.float32)


def load_from_array(x, sr_native):
    """librosa.load's steps after decoding: mono input, resample to 22,050 with kaiser_best."""
    return librosa.resample(x, orig_sr=sr_native, target_sr=22050, res_type="kaiser_best")


def espeak(text, voice, path):
    subprocess.run(["espeak-ng", "-v", voice, "-w", path, text], check=True)
    y, sr = sf.read(path, dtype="float32")
    return y, sr


def main():
    warnings.filterwarnings("ignore")
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(14)
    cases = []  # (name, kind, input float32, native sr)

    for f in ["Front_Center", "Rear_Left", "Side_Right", "Noise"]:
        x, sr = sf.read(f"/usr/share/sounds/alsa/{f}.wav", dtype="float32")
        cases.append((f"alsa_{f}", "recorded speech" if f != "Noise" else "recorded noise", x, sr))

    tmp = tempfile.mkdtemp()
    sentences = [("en-us", "The film was wonderful and the actors were brilliant."),
                 ("en+f3", "I really hated the ending, it was a terrible waste of time."),
                 ("en-gb+m3", "Honestly the service was okay, nothing special.")]
    speech = []
    for i, (voice, text) in enumerate(sentences):
        y, sr = espeak(text, voice, os.path.join(tmp, f"s{i}.wav"))
        speech.append(y)
        cases.append((f"espeak_{i}_22k", f"espeak-ng {voice}: {text}", y, sr))
    assert sr == 22050
    cases.append(("espeak_0_16k", "espeak-ng sentence resampled to 16 kHz (input)",
                  resample_poly(speech[0], 160, 441).astype(np.float32), 16000))
    cases.append(("espeak_1_8k", "espeak-ng sentence resampled to 8 kHz (input)",
                  resample_poly(speech[1], 80, 441).astype(np.float32), 8000))

    def t(sr, secs):
        return np.arange(int(sr * secs)) / sr

    cases.append(("tone_440_8k", "440 Hz tone", (0.5 * np.sin(2 * np.pi * 440 * t(8000, 1.5))).astype(np.float32), 8000))
    tt = t(16000, 2.0)
    chirp = 0.4 * np.sin(2 * np.pi * (80 * tt + (7000 - 80) / (2 * 2.0) * tt ** 2))
    cases.append(("chirp_16k", "linear chirp 80 Hz to 7 kHz", chirp.astype(np.float32), 16000))
    tt = t(44100, 1.0)
    harm = sum(0.3 / k * np.sin(2 * np.pi * 261.63 * k * tt) for k in range(1, 6))
    cases.append(("harmonic_44k1", "C4 with 5 harmonics", harm.astype(np.float32), 44100))
    tt = t(48000, 1.0)
    cases.append(("clipped_48k", "220 Hz tone at amplitude 3, clipped to [-1, 1]",
                  np.clip(3 * np.sin(2 * np.pi * 220 * tt), -1, 1).astype(np.float32), 48000))
    cases.append(("quiet_noise_16k", "white noise at 1e-4 (near silence)",
                  (1e-4 * rng.standard_normal(16000)).astype(np.float32), 16000))
    cases.append(("short_16k", "800 samples (50 ms) of speech", resample_poly(speech[2], 160, 441).astype(np.float32)[4000:4800], 16000))
    cases.append(("veryshort_44k1", "300 samples of a 1 kHz tone",
                  (0.5 * np.sin(2 * np.pi * 1000 * t(44100, 300 / 44100))).astype(np.float32), 44100))
    long = np.concatenate([resample_poly(s, 160, 441) for s in speech * 2]).astype(np.float32)
    long += (0.01 * rng.standard_normal(len(long))).astype(np.float32)
    cases.append(("long_16k", f"{len(long) / 16000:.1f} s of espeak-ng speech with noise", long, 16000))

    # Files decoded by libsndfile on both sides: a stereo WAV and a FLAC of recorded speech.
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 330 * t(44100, 0.5)), 0.3 * np.sign(np.sin(2 * np.pi * 110 * t(44100, 0.5)))], axis=1)
    sf.write(os.path.join(OUT, "stereo.wav"), stereo, 44100, subtype="PCM_16")
    x, sr = sf.read("/usr/share/sounds/alsa/Front_Left.wav", dtype="float32")
    sf.write(os.path.join(OUT, "front_left.flac"), x, sr, subtype="PCM_16")
    files = ["stereo.wav", "front_left.flac"]

    # Inputs on the 16-bit grid, as PCM files hold them (and so that they compress).
    cases = [(n, k, (np.round(np.asarray(x, np.float64) * 32767) / 32768).astype(np.float32), sr) for n, k, x, sr in cases]

    path = os.path.join(OUT, "librosa_features.h5")
    with h5py.File(path, "w") as h:
        h.attrs["librosa"] = librosa.__version__
        h.attrs["resampy"] = resampy.__version__
        h.attrs["numpy"] = np.__version__
        g = h.create_group("cases")
        for name, kind, x, sr in cases:
            y = load_from_array(x, sr) if sr != 22050 else x
            feats = reference_features(y, 22050)
            c = g.create_group(name)
            c.attrs["description"] = kind
            c.attrs["sr"] = float(sr)
            c.create_dataset("input", data=x, compression="gzip", shuffle=True)
            # librosa.load's signal for a few resampled cases (it does not compress).
            if name in KEEP_Y:
                c.create_dataset("y", data=y, compression="gzip", shuffle=True)
            c.create_dataset("features", data=feats, compression="gzip", shuffle=True)
            c.attrs["tuning"] = float(librosa.estimate_tuning(y=y, sr=22050, bins_per_octave=36))
            print(f"{name}: {len(x)} samples at {sr} Hz -> {len(y)} at 22050, {feats.shape[0]} frames, tuning {c.attrs['tuning']:+.2f}")
        fg = h.create_group("files")
        for fn in files:
            y, sr = librosa.load(os.path.join(OUT, fn))
            c = fg.create_group(fn)
            if fn == "stereo.wav":
                c.create_dataset("y", data=y, compression="gzip", shuffle=True)
            c.create_dataset("features", data=reference_features(y, sr), compression="gzip", shuffle=True)
            print(f"file {fn}: {len(y)} samples")
    print(f"wrote {path} ({os.path.getsize(path) / 1e3:.0f} kB)")

    # soxr (librosa >= 0.10's default resampler) against resampy kaiser_best, on real speech.
    print("\nsoxr_hq vs kaiser_best on /usr/share/sounds/alsa (48 kHz speech -> 22,050 Hz):")
    worst = [0.0, 0.0, 0.0, 0.0, 0.0]
    for f in ["Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left", "Side_Right"]:
        x, sr = sf.read(f"/usr/share/sounds/alsa/{f}.wav", dtype="float32")
        yb = librosa.resample(x, orig_sr=sr, target_sr=22050, res_type="kaiser_best")
        ys = librosa.resample(x, orig_sr=sr, target_sr=22050, res_type="soxr_hq")
        fb, fs = reference_features(yb, 22050), reference_features(ys, 22050)
        rel = np.sqrt(np.mean((yb - ys) ** 2) / np.mean(yb ** 2))
        d = [np.abs(yb - ys).max(), rel, np.abs(fb[:, 0] - fs[:, 0]).max(), np.abs(fb[:, 1:21] - fs[:, 1:21]).max(), np.abs(fb[:, 21:] - fs[:, 21:]).max()]
        worst = [max(a, b) for a, b in zip(worst, d)]
        print(f"  {f}: signal max|diff| {d[0]:.2e} (relative RMS {d[1]:.2e}); zcr {d[2]:.2e}, mfcc {d[3]:.3f} dB, chroma {d[4]:.3f}")
    print(f"  worst: signal {worst[0]:.2e} (rel RMS {worst[1]:.2e}), zcr {worst[2]:.2e}, mfcc {worst[3]:.3f} dB, chroma {worst[4]:.3f}")


if __name__ == "__main__":
    sys.exit(main())
