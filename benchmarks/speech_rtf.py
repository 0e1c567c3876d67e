"""CPU real-time factor of the speech recognisers: seconds of compute per second of audio, one
utterance at a time, for the features, the network and each decoder (greedy, beam, beam + LM).
Goal: the default model (crnn) at RTF <= 0.1 on one thread with the decoder its release uses.

    .venv/bin/python benchmarks/speech_rtf.py [--models models] [--seconds 10] [--threads 1]

Uses the released weights under models/speech/<model>_<language>/ when present (the real
vocabulary, LM and decoder), else an untrained model with a 40-character vocabulary and an LM
fitted on a few sentences (the decoders then see flat posteriors: the beam figures are a
worst case). The audio is a synthetic wave: the cost does not depend on what is said.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from usecases.core.registry import create_model, get_usecase
from usecases.core.stages import load_model
from usecases.speech.decode import CharNgramLM
from usecases.speech.features import SAMPLE_RATE

MODELS = ("crnn_tiny", "crnn", "crnn_large")
LETTERS = list(" abcdefghijklmnopqrstuvwxyzɓɗƙƴʼàáèéìíòóùúẹọṣ")


def load(name: str, language: str, models_root: Path):
    release = models_root / "speech" / f"{name}_{language}"
    if (release / "weights.safetensors").is_file():
        model, meta, _ = load_model(release)
        return model, meta, "release"
    labels = ["", *LETTERS]
    lm = CharNgramLM.fit(["ina kwana", "sannu da zuwa", "ẹ kú àárọ̀"], order=5, labels=labels)
    meta = {
        "labels": labels,
        "input": "logmel",
        "sample_rate": SAMPLE_RATE,
        "lm": lm.to_dict(),
        "decode": {"beam": 8, "lm_alpha": 0.5, "lm_beta": 1.0},
        "decoder": "beam_lm",
    }
    return create_model(name, vocab_size=len(labels)).eval(), meta, "untrained"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="models", type=Path)
    p.add_argument("--language", default="hau")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each utterance")
    p.add_argument("--utterances", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    uc = get_usecase("speech")
    rng = np.random.default_rng(0)
    waves = [
        (0.1 * rng.standard_normal(int(args.seconds * SAMPLE_RATE))).astype(np.float32)
        for _ in range(args.utterances)
    ]
    audio = args.seconds * args.utterances
    print(f"threads={args.threads}, {args.utterances} utterances of {args.seconds:g} s\n")
    print("| model | weights | params (M) | network RTF | greedy | beam | beam + LM |")
    print("|---|---|---|---|---|---|---|")
    for name in MODELS:
        model, meta, source = load(name, args.language, args.models)
        params = sum(x.numel() for x in model.parameters()) / 1e6
        uc.posteriors(model, meta, waves[:1])  # warm-up
        t0 = time.perf_counter()
        lps = [uc.posteriors(model, meta, [w])[0] for w in waves]
        network = time.perf_counter() - t0
        cells = []
        for decode in uc.decoders(meta).values():
            t0 = time.perf_counter()
            for lp in lps:
                decode(lp)
            cells.append(f"{(network + time.perf_counter() - t0) / audio:.4f}")
        print(f"| {name} | {source} | {params:.2f} | {network / audio:.4f} | {' | '.join(cells)} |")
    print("\nRTF = compute seconds / audio seconds (features + network [+ decoder]).")


if __name__ == "__main__":
    main()
