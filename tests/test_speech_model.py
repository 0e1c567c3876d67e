"""Speech model half: text normalisation and error rates, features and augmentation, CTC
batching, and the pipeline prepare -> train -> evaluate -> predict/transcribe on a tiny corpus
written by the test (tiny configs: a few steps)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from usecases.core import stages
from usecases.core.checkpoint import read_metadata
from usecases.speech import features
from usecases.speech.task import collate_utterances, ctc_loss
from usecases.speech.text import CharVocab, error_rates, normalise, strip_tones, utterance_cer

from .conftest import run_zoo
from .test_speech_prepare import RATE, config, tiny_trained_project

# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('Ya ce "ɗan uwa" ya zo.', "ya ce ɗan uwa ya zo"),
        ("Ɗan'uwa da ‘yan’uwa", "ɗanʼuwa da ʼyanʼuwa"),  # apostrophes -> one letter
        ("ọ̀rọ̀  ί   ὸ", "ọ̀rọ̀ í ò"),  # Greek look-alikes -> Latin, tones kept
        ("̀ ilé, wa!", "ilé wa"),  # a tone mark floating on nothing is dropped
        ("", ""),
    ],
)
def test_normalise(raw: str, expected: str):
    assert normalise(raw) == expected


def test_strip_tones_keeps_dots_below():
    assert strip_tones("ọ̀rọ̀ ẹ̀kọ́ ṣé") == "ọrọ ẹkọ ṣe"


def test_char_vocab_round_trip_and_unknown():
    v = CharVocab.from_texts(["Ina kwana.", "Ƙofa"])
    assert v.labels[0] == "" and " " in v.labels and "ƙ" in v.labels
    ids = v.encode("Ina ƙofa!")
    assert 0 not in ids and v.decode(ids) == "ina ƙofa"
    assert v.unknown(["ɓaɓe"]) == {"ɓ": 2, "e": 1}
    assert v.encode("ɓa") == [v.index["a"]]
    with pytest.raises(ValueError, match="distinct single characters"):
        CharVocab(["a", "a"])


def test_error_rates():
    r = error_rates(["ọ̀rọ̀ wa", "ilé"], ["ọrọ wa", "ile"])
    # NFC code points: ọ̀ stays ọ + combining grave (2 deletions); é -> e (1 substitution); 11.
    assert r["cer"] == pytest.approx(3 / 11)
    assert r["cer_no_tones"] == 0.0 and r["wer_no_tones"] == 0.0
    assert r["wer"] == pytest.approx(2 / 3)
    # An empty hypothesis is all deletions; an empty reference is skipped.
    assert error_rates(["abc", ""], ["", "x"])["cer"] == 1.0
    with pytest.raises(ValueError, match="no non-empty reference"):
        error_rates([""], ["x"])
    assert utterance_cer("Abc.", "abd") == pytest.approx(1 / 3)


# ---------------------------------------------------------------- features


def test_logmel_shape_and_normalisation():
    wave = np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32)
    feats = features.LogMel()(torch.from_numpy(wave))
    assert feats.shape == (features.frames_for(RATE), features.N_MELS) == (101, 80)
    assert feats.mean(0).abs().max() < 1e-4 and (feats.std(0) - 1).abs().max() < 0.02
    batch = torch.zeros(2, RATE)
    batch[0] = torch.from_numpy(wave)
    batch[1, : RATE // 2] = torch.from_numpy(wave[: RATE // 2])
    both = features.LogMel()(batch, torch.tensor([RATE, RATE // 2]))
    assert torch.all(both[1, features.frames_for(RATE // 2) :] == 0)  # padding stays zero


def test_augmentations_are_seeded_and_keep_padding():
    x = torch.randn(2, 100, 80)
    x[1, 60:] = 0
    frames = torch.tensor([100, 60])
    a = features.spec_augment(x, frames, torch.Generator().manual_seed(1))
    b = features.spec_augment(x, frames, torch.Generator().manual_seed(1))
    c = features.spec_augment(x, frames, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a == 0).float().mean() > (x == 0).float().mean()
    assert torch.all(a[1, 60:] == 0) and not torch.equal(x, a)  # input untouched
    same = features.warp_frequency(x, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(same, x)
    warped = features.warp_frequency(x, 0.8, 0.8, torch.Generator().manual_seed(0))
    # Stretching by 0.8 reads bin m from bin m / 0.8: bin 40 takes bin 50.
    assert torch.allclose(warped[..., 40], x[..., 50])


def test_speed_perturbation_changes_duration():
    wave = np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32)
    assert features.speed(wave, 1.0) is wave
    assert abs(len(features.speed(wave, 0.9)) - RATE / 0.9) <= 2
    assert abs(len(features.speed(wave, 1.1)) - RATE / 1.1) <= 2


def test_collate_and_ctc_loss():
    ex = [
        {"x": torch.randn(40, 80), "targets": [3, 4, 4], "ref": "abb", "id": "u1"},
        {"x": torch.randn(20, 80), "targets": [], "ref": "", "id": "u2"},
    ]
    b = collate_utterances(ex)
    assert b["x"].shape == (2, 40, 80) and b["lengths"].tolist() == [40, 20]
    assert b["targets"].tolist() == [3, 4, 4] and b["target_lengths"].tolist() == [3, 0]
    assert torch.all(b["x"][1, 20:] == 0) and b["id"] == ["u1", "u2"]
    logits = torch.randn(2, 10, 6, requires_grad=True)
    loss = ctc_loss(logits, torch.tensor([10, 5]), b["targets"], b["target_lengths"])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # More characters than frames: no alignment exists; counted as zero, not infinity.
    impossible = ctc_loss(logits, torch.tensor([2, 2]), b["targets"], b["target_lengths"])
    assert torch.isfinite(impossible)


# ---------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny corpus, prepared, and a crnn_tiny trained for a few steps on it (shared by the
    tests below, which only read it, except the reproducibility test that retrains it)."""
    root = tmp_path_factory.mktemp("speech")
    with tiny_trained_project(root) as cfg:
        yield root, cfg


def test_prepare_carves_a_seeded_dev_split(trained):
    root, cfg = trained
    with open(root / "data/processed/speech/manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    hau = [r for r in rows if r["language"] == "hau"]
    assert sorted(r["split"] for r in hau) == ["dev", "test", "test", "train", "train"]
    assert {r["speaker"] for r in hau if r["split"] == "dev"} == {"hau_F1"}  # from train


def test_train_evaluate_and_release(trained):
    root, cfg = trained
    out = stages.model_dir(cfg)
    meta = read_metadata(out / stages.WEIGHTS)
    assert meta["labels"][0] == "" and "ƙ" in meta["labels"]
    assert meta["decoder"] in ("greedy", "beam", "beam_lm")
    assert set(meta["dev_cer"]) == {"greedy", "beam", "beam_lm"}
    assert meta["input"] == "logmel" and meta["language"] == "hau"
    metrics = stages.evaluate(cfg)
    assert metrics["n"] == 2 and metrics["split"] == "test"
    assert set(metrics["decoders"]) == {"greedy", "beam", "beam_lm"}
    assert metrics["cer"] == metrics["decoders"][meta["decoder"]]["cer"] >= 0
    with open(out / "predictions.csv", encoding="utf-8") as f:
        preds = list(csv.DictReader(f))
    assert [p["reference"] for p in preds] == ["Ruwa ya sauka.", "Yara sun tafi."]
    words = json.loads((out / "keywords.json").read_text(encoding="utf-8"))["keywords"]
    # Words of the test transcripts (4+ letters) that the model can spell, alphabetical.
    assert words == sorted(words) and set(words) <= {"ruwa", "sauka", "tafi", "yara"}
    assert all(set(w) <= set(meta["labels"]) for w in words) and "ruwa" in words
    card = (out / "model_card.md").read_text(encoding="utf-8")
    assert "Error rates by decoder" in card and "Real-time factor" in card
    speed = json.loads((out / "speed.json").read_text())
    assert speed["real_time_factor_1thread"] > 0


def test_training_is_reproducible(trained, tmp_path_factory):
    root, cfg = trained
    first = (stages.model_dir(cfg) / stages.WEIGHTS).read_bytes()
    stages.train(cfg)
    assert (stages.model_dir(cfg) / stages.WEIGHTS).read_bytes() == first


def test_transcribe_and_predict_bad_and_odd_inputs(trained):
    root, cfg = trained
    d = root / "inputs"
    d.mkdir()
    t = np.arange(int(5.3 * 8000)) / 8000
    sf.write(d / "phone.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    sf.write(d / "silence.wav", np.zeros(RATE, np.float32), RATE)
    sf.write(d / "clipped.flac", np.clip(3 * np.sin(np.arange(RATE) / 5), -1, 1), RATE)
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("not audio", encoding="utf-8")
    good = (d / "phone.wav").read_bytes()
    (d / "corrupt.wav").write_bytes(good[:20] + b"\x00" * 30)
    files = ["phone.wav", "empty.wav", "silence.wav", "text.wav", "clipped.flac", "corrupt.wav"]
    model = str(stages.model_dir(cfg))
    r = run_zoo("transcribe", "speech", *[str(d / f) for f in files], "--model", model, cwd=root)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 3 and all(
        ("empty.wav" in e or "text.wav" in e or "corrupt.wav" in e) for e in errors
    )
    assert "phone.wav (5.30 s) [narrowband]" in r.stdout
    assert "silence.wav (1.00 s) [silence]" in r.stdout
    assert "clipped.flac (1.00 s) [clipping]" in r.stdout
    # 5.3 s cut in pieces of at most 2 s (data.chunk_seconds=2): three timed segments.
    block = r.stdout.split("phone.wav")[1].split("silence.wav")[0]
    assert block.count("[") == 4 and "0.00 -" in block

    r = run_zoo(
        "predict",
        "speech",
        str(d / "phone.wav"),
        "--model",
        model,
        "--json",
        "--keywords",
        "ruwa,yara",
        cwd=root,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["seconds"] == 5.3 and len(out["segments"]) == 3 and isinstance(out["keywords"], list)
    r = run_zoo(
        "predict", "speech", str(d / "phone.wav"), "--model", model, "--keywords", "ωμέγα", cwd=root
    )
    assert r.returncode != 0 and "not in this model's alphabet" in r.stderr


def test_wav2vec2_checkpoint_through_the_pipeline(trained):
    """The pretrained path end to end: a tiny random Wav2Vec2 checkpoint saved by the test is
    fine-tuned with the corpus's characters, evaluated and used by `zoo transcribe`."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from .test_speech_hf import TINY, VARIANTS

    root, _ = trained
    torch.manual_seed(0)
    ckpt = root / "w2v-tiny"
    Wav2Vec2ForCTC(Wav2Vec2Config(**TINY, **VARIANTS["layer"])).save_pretrained(ckpt)
    cfg = config(root, ["model=wav2vec2_ctc", f"model.weights={ckpt}", "trainer.max_steps=2"])
    assert cfg.name == "wav2vec2_ctc_hau"
    stages.train(cfg)
    out = stages.model_dir(cfg)
    meta = read_metadata(out / stages.WEIGHTS)
    assert meta["input"] == "wave" and meta["labels"][0] == ""
    metrics = stages.evaluate(cfg)
    assert metrics["n"] == 2 and metrics["cer"] >= 0
    wav = root / "data/raw/speech/audio/test/ha_3.flac"
    r = run_zoo("transcribe", "speech", str(wav), "--model", str(out), "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["seconds"] == 2.0
