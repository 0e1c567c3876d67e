import pytest
import torch

from usecases.core.registry import create_model, list_models, model_entry, register_model


def test_registry_lists_crop_models():
    names = list_models(usecase="crop_disease")
    assert {"efficientnet_lite0", "mobilenet_v3_small", "resnet18"} <= set(names)
    assert list_models("mobilenet*") == ["mobilenet_v3_small"]


def test_unknown_model_names_close_matches():
    with pytest.raises(KeyError, match="did you mean 'resnet18'"):
        create_model("resnet19")


def test_duplicate_registration_warns(monkeypatch):
    from usecases.core import registry

    list_models()  # load the real registrations first
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    def resnet18(pretrained=False, **kw):  # same name as the real one
        return None

    with pytest.warns(UserWarning, match="registered twice"):
        register_model("crop_disease")(resnet18)
    assert model_entry("resnet18").fn is resnet18


IMAGE_MODELS = [n for n in list_models() if model_entry(n).usecase in ("crop_disease", "doc_fraud")]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_registered_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, pretrained=False, num_classes=3, image_size=64)
    x = torch.randn(2, model_entry(name).meta.get("in_channels", 3), 64, 64)
    out = model(x)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["marian_tiny", "pre_tiny", "pre_nano"])
def test_translation_models_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=50, dropout=0.0)
    x = torch.randint(3, 50, (2, 7))
    y = torch.randint(3, 50, (2, 5))
    logits = model(input_ids=x, attention_mask=torch.ones_like(x), decoder_input_ids=y).logits
    assert logits.shape == (2, 5, 50)
    logits.logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["crnn_tiny", "crnn", "crnn_large"])
def test_speech_models_forward_backward_and_padding(name):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=11, dropout=0.0).eval()
    x = torch.randn(2, 50, 80)
    x[1, 30:] = 0.0
    logits, lengths = model(x, torch.tensor([50, 30]))
    assert logits.shape == (2, 13, 11) and lengths.tolist() == [13, 8]
    assert torch.isfinite(logits).all()
    # Packed sequences: the shorter utterance gives the same output alone as in the batch.
    alone, _ = model(x[1:, :30], torch.tensor([30]))
    assert torch.allclose(alone[0], logits[1, :8], atol=1e-5)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_hf_seq2seq_needs_a_checkpoint():
    with pytest.raises(ValueError, match="model.weights"):
        create_model("hf_seq2seq")


def test_lite0_pretrained_loads_packaged_imagenet_weights():
    a = create_model("efficientnet_lite0", pretrained=True, num_classes=3, image_size=64)
    b = create_model("efficientnet_lite0", pretrained=False, num_classes=3, image_size=64)
    stem_a, stem_b = a.state_dict()["_conv_stem.weight"], b.state_dict()["_conv_stem.weight"]
    assert not torch.equal(stem_a, stem_b)
    again = create_model("efficientnet_lite0", pretrained=True, num_classes=3, image_size=64)
    assert torch.equal(stem_a, again.state_dict()["_conv_stem.weight"])


def test_missing_local_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        create_model("resnet18", num_classes=3, weights=str(tmp_path / "nope.safetensors"))


def test_scratch_torchvision_models_use_fast_batchnorm_statistics():
    model = create_model("mobilenet_v3_small", num_classes=3)
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
