"""The pretrained speech path: a tiny local Wav2Vec2 checkpoint fine-tuned with CTC."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from usecases.core.registry import create_model, model_entry  # noqa: E402
from usecases.speech.hf import Wav2Vec2CTC, wav2vec2_ctc  # noqa: E402

V = 7  # our vocabulary: blank + 6 characters
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "conv_dim": (16, 16),
    "conv_kernel": (10, 3),
    "conv_stride": (5, 2),
    "num_feat_extract_layers": 2,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "vocab_size": 12,
}
VARIANTS = {
    "group": {"feat_extract_norm": "group", "do_stable_layer_norm": False},  # wav2vec2-base
    "layer": {"feat_extract_norm": "layer", "do_stable_layer_norm": True},  # XLS-R / MMS
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """norm -> (folder written by save_pretrained, the saved state dict)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    out = {}
    for norm, extra in VARIANTS.items():
        torch.manual_seed(0)
        model = Wav2Vec2ForCTC(Wav2Vec2Config(**TINY, **extra))
        folder = tmp_path_factory.mktemp(f"w2v-{norm}")
        model.save_pretrained(folder)
        out[norm] = (folder, {k: v.detach().clone() for k, v in model.state_dict().items()})
    return out


def frames(samples: int) -> int:
    for kernel, stride in zip(TINY["conv_kernel"], TINY["conv_stride"], strict=True):
        samples = (samples - kernel) // stride + 1
    return samples


def waves(*lengths: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded batch of noisy tones of the given lengths (samples)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        x[i, :n] = 0.3 * torch.sin(2 * torch.pi * (200 + 100 * i) * t) + 0.05 * torch.randn(
            n, generator=g
        )
    return x, torch.tensor(lengths)


def build(checkpoints, norm: str, **kw) -> Wav2Vec2CTC:
    kw.setdefault("pretrained", True)
    return create_model("wav2vec2_ctc", weights=str(checkpoints[norm][0]), vocab_size=V, **kw)


def test_registered_for_speech_with_wave_input():
    entry = model_entry("wav2vec2_ctc")
    assert entry.usecase == "speech"
    assert entry.meta["input"] == "wave"
    assert "checkpoint" in entry.meta["licence"]


@pytest.mark.parametrize("norm", VARIANTS)
def test_logits_and_lengths_of_a_padded_batch(checkpoints, norm):
    model = build(checkpoints, norm).eval()
    x, lengths = waves(4000, 2500)
    with torch.no_grad():
        logits, out_lengths = model(x, lengths)
    assert logits.shape == (2, frames(4000), V)
    assert out_lengths.dtype == torch.long
    assert out_lengths.tolist() == [frames(4000), frames(2500)]
    assert out_lengths[1] < out_lengths[0] == logits.shape[1]
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("norm", VARIANTS)
def test_pretrained_encoder_is_loaded_and_the_head_resized(checkpoints, norm):
    _, saved = checkpoints[norm]
    model = build(checkpoints, norm)
    state = model.state_dict()
    assert all(k.startswith("model.") for k in state)
    for key in (
        "wav2vec2.feature_extractor.conv_layers.0.conv.weight",
        "wav2vec2.encoder.layers.1.attention.q_proj.weight",
        "wav2vec2.feature_projection.projection.weight",
    ):
        assert torch.equal(state[f"model.{key}"], saved[key]), key
    assert saved["lm_head.weight"].shape == (12, 32)
    assert state["model.lm_head.weight"].shape == (V, 32)
    assert model.model.config.pad_token_id == 0
    assert model.model.config.ctc_loss_reduction == "mean"
    assert model.model.dtype == torch.float32


def test_architecture_only_then_a_release_s_weights(checkpoints):
    trained = build(checkpoints, "layer")
    bare = build(checkpoints, "layer", pretrained=False)
    key = "model.wav2vec2.encoder.layers.1.attention.q_proj.weight"
    assert not torch.equal(bare.state_dict()[key], trained.state_dict()[key])
    bare.load_state_dict(trained.state_dict())  # same keys and shapes, strict
    assert torch.equal(bare.state_dict()[key], trained.state_dict()[key])


def test_attention_mask_only_for_layer_norm_feature_encoders(checkpoints):
    seen = {}
    for norm in VARIANTS:
        model = build(checkpoints, norm).eval()
        model.model.register_forward_pre_hook(
            lambda _m, _a, kw, norm=norm: seen.__setitem__(norm, kw.get("attention_mask")),
            with_kwargs=True,
        )
        with torch.no_grad():
            model(*waves(4000, 2500))
    assert seen["group"] is None
    assert seen["layer"].tolist()[1] == [1] * 2500 + [0] * 1500


def test_padding_invariance_with_an_attention_mask(checkpoints):
    model = build(checkpoints, "layer").eval()
    x, lengths = waves(4000, 2500)
    with torch.no_grad():
        batched, out_lengths = model(x, lengths)
        alone, alone_lengths = model(x[1:, :2500], lengths[1:])
    n = int(out_lengths[1])
    assert alone.shape[1] == n == int(alone_lengths[0])
    torch.testing.assert_close(batched[1, :n], alone[0], atol=1e-4, rtol=1e-4)


def test_waves_are_normalised_over_their_true_length(checkpoints):
    model = build(checkpoints, "layer").eval()
    x, lengths = waves(4000, 2500)
    y = x.clone()
    y[1, :2500] = 3.0 * x[1, :2500] + 0.5  # louder, with a DC offset; padding stays zero
    with torch.no_grad():
        a, _ = model(x, lengths)
        b, _ = model(y, lengths)
    torch.testing.assert_close(a[1, : frames(2500)], b[1, : frames(2500)], atol=1e-4, rtol=1e-4)


def ctc(model: Wav2Vec2CTC, x, lengths, targets, target_lengths) -> torch.Tensor:
    logits, out_lengths = model(x, lengths)
    log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)  # [T', B, V]
    return F.ctc_loss(log_probs, targets, out_lengths, target_lengths, blank=0)


@pytest.mark.parametrize("norm", VARIANTS)
def test_ctc_fine_tuning_lowers_the_loss_with_a_frozen_feature_encoder(checkpoints, norm):
    torch.manual_seed(0)
    model = build(checkpoints, norm)
    x, lengths = waves(4000, 2500)
    targets = torch.tensor([[1, 2, 3, 4, 5], [6, 5, 4, 0, 0]])
    target_lengths = torch.tensor([5, 3])
    frozen = list(model.model.wav2vec2.feature_extractor.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)

    model.eval()
    with torch.no_grad():
        before = ctc(model, x, lengths, targets, target_lengths).item()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for step in range(6):
        opt.zero_grad()
        loss = ctc(model, x, lengths, targets, target_lengths)
        loss.backward()
        if step == 0:
            assert torch.isfinite(loss)
            assert all(p.grad is None for p in frozen)
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert model.model.lm_head.weight.grad.abs().sum() > 0
        opt.step()
    model.eval()
    with torch.no_grad():
        after = ctc(model, x, lengths, targets, target_lengths).item()
    assert after < before


def test_unfrozen_feature_encoder_trains(checkpoints):
    model = build(checkpoints, "group", freeze_feature_encoder=False)
    assert all(p.requires_grad for p in model.model.wav2vec2.feature_extractor.parameters())


def test_missing_weights_and_bad_vocabulary_are_explained(checkpoints):
    with pytest.raises(ValueError, match=r"needs model\.weights.*facebook/mms-300m"):
        create_model("wav2vec2_ctc", pretrained=True, vocab_size=V)
    folder = str(checkpoints["group"][0])
    for bad in (0, 1, -3, 2.5):
        with pytest.raises(ValueError, match="vocab_size > 1"):
            wav2vec2_ctc(pretrained=True, weights=folder, vocab_size=bad)
    with pytest.raises(ValueError, match="dropout"):
        wav2vec2_ctc(pretrained=True, weights=folder, vocab_size=V, dropout=1.5)


def test_unknown_folder_and_offline_hub_id_are_explained(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(FileNotFoundError, match=f"no checkpoint folder at {missing}"):
        wav2vec2_ctc(pretrained=True, weights=str(missing), vocab_size=V)
    with pytest.raises(OSError, match="not a transformers checkpoint folder"):
        wav2vec2_ctc(pretrained=True, weights=str(tmp_path), vocab_size=V)
    hub_id = "usecase-zoo-tests/no-such-model"
    with pytest.raises(OSError, match=f"'{hub_id}'.*Download it first.*checkpoint folder"):
        wav2vec2_ctc(pretrained=True, weights=hub_id, vocab_size=V)


def test_weights_missing_from_a_folder_or_another_architecture_are_explained(tmp_path):
    from transformers import HubertConfig, Wav2Vec2Config

    Wav2Vec2Config(**TINY).save_pretrained(tmp_path / "config-only")
    with pytest.raises(OSError, match="cannot load the weights of"):
        wav2vec2_ctc(pretrained=True, weights=str(tmp_path / "config-only"), vocab_size=V)
    HubertConfig(**TINY).save_pretrained(tmp_path / "hubert")
    with pytest.raises(ValueError, match="'hubert' checkpoint.*needs a Wav2Vec2 one"):
        wav2vec2_ctc(pretrained=False, weights=str(tmp_path / "hubert"), vocab_size=V)


def test_output_lengths_fallback_matches_transformers(checkpoints, monkeypatch):
    model = build(checkpoints, "group")
    lengths = torch.tensor([4000, 2500, 401, 30, 0])
    expected = model.output_lengths(lengths)
    monkeypatch.setattr(model.model, "_get_feat_extract_output_lengths", None)
    assert torch.equal(model.output_lengths(lengths), expected)
    assert expected[:3].tolist() == [frames(4000), frames(2500), frames(401)]
