#!/usr/bin/env python3
# A copy of the project's shared corpus generator (shared/data/make_speech_commands_synth.py),
# kept here so experiments/generated_speech/run.py and the tests run from a fresh clone.
# Keep the two identical.
"""Synthesize a small keyword-spotting corpus laid out exactly like Speech Commands v0.02.

The real Speech Commands v0.02 archive unpacks to:

    <root>/<word>/<speaker>_nohash_<n>.wav   16 kHz, mono, 16-bit PCM, at most 1 s
    <root>/_background_noise_/*.wav          long noise recordings
    <root>/validation_list.txt               relative paths of validation clips
    <root>/testing_list.txt                  relative paths of test clips
                                             (training = every other clip)

This script writes the same layout, with speech from the espeak-ng synthesizer
(`apt-get install espeak-ng`): many voices, accents, pitches and speeds stand in
for speakers, and splits are speaker-disjoint, as in the real data set. Code
that reads this tree reads the real archive unchanged.

With --unlabeled it also writes an unlabeled corpus of longer clips (spoken
phrases, tones and noise, several seconds each) under <root>/../unlabeled/,
a stand-in for AudioSet-style pretraining audio.

Needs: numpy, scipy, soundfile, and the espeak-ng program.
"""
import argparse
import hashlib
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SR = 16000
WORDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house "
    "learn left marvin nine no off on one right seven sheila six stop three tree "
    "two up visual wow yes zero"
).split()
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
FOREIGN = ["de", "fr-fr", "es", "it", "nl", "sv", "pl", "pt-br", "hi", "da", "fi", "cs"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "croak", "whisper", "Andy", "Annie",
            "adam", "belinda", "benjamin", "david", "edward", "grandma", "grandpa",
            "john", "linda", "max", "paul", "robert", "steph", "travis", "victor", "zac"]


def speak(text, voice, pitch, speed, amplitude=100):
    """Run espeak-ng and return float32 audio at 16 kHz."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed),
                        "-a", str(amplitude), "-w", f.name, text],
                       check=True, capture_output=True)
        audio, sr = sf.read(f.name, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    g = np.gcd(sr, SR)
    return resample_poly(audio, SR // g, sr // g).astype(np.float32)


def trim(audio, thresh=0.01):
    idx = np.flatnonzero(np.abs(audio) > thresh)
    return audio[idx[0]: idx[-1] + 1] if idx.size else audio


def colored_noise(rng, n, kind):
    white = rng.standard_normal(n).astype(np.float32)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float32) + 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)
    out = np.fft.irfft(spec, n).astype(np.float32)
    return out / (out.std() + 1e-8)


def background(rng, seconds, kind):
    n = int(seconds * SR)
    if kind == "hum":
        t = np.arange(n) / SR
        base = rng.choice([50.0, 60.0])
        sig = sum(np.sin(2 * np.pi * base * k * t) / k for k in range(1, 6))
        return (sig + 0.3 * colored_noise(rng, n, "white")).astype(np.float32)
    if kind == "tap":
        w = colored_noise(rng, n, "white")
        spec = np.fft.rfft(w)
        freqs = np.fft.rfftfreq(n, 1 / SR)
        spec *= np.exp(-((freqs - 3000.0) / 1500.0) ** 2)
        return np.fft.irfft(spec, n).astype(np.float32)
    return colored_noise(rng, n, kind)


def mix(rng, speech, noise, snr_db):
    start = rng.integers(0, max(1, noise.size - speech.size))
    seg = noise[start:start + speech.size]
    p_s = np.mean(speech ** 2) + 1e-10
    p_n = np.mean(seg ** 2) + 1e-10
    return speech + seg * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))


def normalize(audio, rng):
    peak = np.abs(audio).max() + 1e-8
    return (audio / peak * rng.uniform(0.2, 0.9)).astype(np.float32)


def make_speakers(rng, n, accents, variants):
    speakers = []
    for _ in range(n):
        voice = f"{rng.choice(accents)}+{rng.choice(variants)}"
        pitch = int(rng.integers(15, 86))
        speed = int(rng.integers(120, 231))
        sid = hashlib.sha1(f"{voice}-{pitch}-{speed}-{rng.random()}".encode()).hexdigest()[:8]
        speakers.append((sid, voice, pitch, speed))
    return speakers


def write_clip(path, audio):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, audio, SR, subtype="PCM_16")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="output folder (the Speech Commands root)")
    p.add_argument("--speakers", type=int, default=60, help="number of synthetic speakers")
    p.add_argument("--words", type=int, default=len(WORDS), help="use the first N words")
    p.add_argument("--takes", type=int, default=1, help="utterances of each word per speaker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accents", default=",".join(ACCENTS + FOREIGN),
                   help="comma-separated espeak-ng voices to draw accents from")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated espeak-ng voice variants to draw timbres from")
    p.add_argument("--noise-prob", type=float, default=0.6)
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--test-frac", type=float, default=0.1)
    p.add_argument("--unlabeled", type=int, default=0,
                   help="also write N unlabeled multi-second clips to <root>/../unlabeled")
    a = p.parse_args()

    rng = np.random.default_rng(a.seed)
    accents, variants = a.accents.split(","), a.variants.split(",")
    words = WORDS[: a.words]

    noise_kinds = ["white", "pink", "brown", "hum", "tap"]
    noises = {k: background(rng, 30.0, k) for k in noise_kinds}
    for k, v in noises.items():
        write_clip(os.path.join(a.root, "_background_noise_", f"{k}_noise.wav"),
                   (v / (np.abs(v).max() + 1e-8) * 0.5).astype(np.float32))

    speakers = make_speakers(rng, a.speakers, accents, variants)
    n_val = max(1, int(round(a.speakers * a.val_frac)))
    n_test = max(1, int(round(a.speakers * a.test_frac)))
    split_of = {}
    for i, (sid, *_rest) in enumerate(speakers):
        split_of[sid] = "validation" if i < n_val else "testing" if i < n_val + n_test else "training"

    lists = {"validation": [], "testing": []}
    count = 0
    for sid, voice, pitch, speed in speakers:
        for word in words:
            for take in range(a.takes):
                audio = trim(speak(word, voice,
                                   int(np.clip(pitch + rng.integers(-5, 6), 0, 99)),
                                   int(speed + rng.integers(-15, 16))))[:SR]
                # Real clips are 1 s with the word somewhere inside; some are shorter.
                if rng.random() < 0.9:
                    clip = np.zeros(SR, np.float32)
                    off = rng.integers(0, SR - audio.size + 1)
                    clip[off: off + audio.size] = audio
                    audio = clip + colored_noise(rng, SR, "pink") * 1e-3
                # Background noise spans the whole clip, as in a real recording.
                if rng.random() < a.noise_prob:
                    kind = noise_kinds[rng.integers(len(noise_kinds))]
                    audio = mix(rng, audio, noises[kind], rng.uniform(5, 30))
                rel = f"{word}/{sid}_nohash_{take}.wav"
                write_clip(os.path.join(a.root, rel), normalize(audio, rng))
                if split_of[sid] in lists:
                    lists[split_of[sid]].append(rel)
                count += 1

    for name, rels in lists.items():
        with open(os.path.join(a.root, f"{name}_list.txt"), "w") as f:
            f.write("".join(r + "\n" for r in sorted(rels)))

    if a.unlabeled:
        out = os.path.join(os.path.dirname(os.path.abspath(a.root)), "unlabeled")
        pool = make_speakers(rng, max(8, a.speakers), accents, variants)
        for i in range(a.unlabeled):
            seconds = float(rng.uniform(3.0, 10.0))
            n = int(seconds * SR)
            kind = rng.integers(3)
            if kind < 2:  # speech: a random phrase from a random speaker
                sid, voice, pitch, speed = pool[rng.integers(len(pool))]
                phrase = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))
                audio = speak(phrase, voice, pitch, speed)[:n]
                audio = np.pad(audio, (0, n - audio.size))
            else:  # tones: a random melody of harmonic notes
                t = np.arange(n) / SR
                audio = np.zeros(n, np.float32)
                step = int(SR * rng.uniform(0.1, 0.5))
                for s in range(0, n, step):
                    f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
                    seg = slice(s, min(n, s + step))
                    env = np.exp(-np.arange(seg.stop - seg.start) / (0.3 * step))
                    audio[seg] += env * sum(np.sin(2 * np.pi * f0 * k * t[seg]) / k
                                            for k in range(1, 5))
            audio = mix(rng, audio, noises[noise_kinds[rng.integers(len(noise_kinds))]],
                        rng.uniform(0, 30))
            write_clip(os.path.join(out, f"clip_{i:05d}.flac"), normalize(audio, rng))

    print(f"wrote {count} clips from {len(speakers)} speakers and {len(words)} words "
          f"to {a.root}" + (f"; {a.unlabeled} unlabeled clips" if a.unlabeled else ""))


if __name__ == "__main__":
    main()
