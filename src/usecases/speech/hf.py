"""Pretrained speech recognisers: a `transformers` Wav2Vec2 / MMS checkpoint fine-tuned with CTC.

`wav2vec2_ctc` loads any Wav2Vec2-architecture checkpoint (wav2vec2-base/large, XLS-R, MMS) from
a folder or, online or from the local cache, a hub id (`model.weights`), and puts a fresh CTC
head on it sized to our own character vocabulary (the CTC blank is index 0). It follows the
interface of every speech model here: `forward(x, lengths) -> (logits [B, T', V], out_lengths
[B])`, with `x` a zero-padded batch of raw 16 kHz waves [B, S] and `lengths` in samples; the
logits are un-normalised (the caller applies log_softmax and the CTC loss).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from usecases.core.registry import register_model

SAMPLE_RATE = 16000
BLANK = 0
# Config keys that `dropout` sets (the regularisation of a fine-tuning run, not of pretraining).
DROPOUT_KEYS = (
    "hidden_dropout",
    "activation_dropout",
    "attention_dropout",
    "feat_proj_dropout",
    "final_dropout",
)
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def _load_config(name: str, weights: str, **overrides: Any) -> Any:
    """`AutoConfig.from_pretrained` with an error that says what to do when it cannot be found."""
    from transformers import AutoConfig

    path = Path(weights).expanduser()
    try:
        return AutoConfig.from_pretrained(str(path) if path.exists() else weights, **overrides)
    except (OSError, ValueError) as e:  # huggingface_hub's validation errors are ValueErrors
        if path.is_dir():
            raise OSError(
                f"model {name}: {weights} is not a transformers checkpoint folder (it needs a "
                f"config.json and model weights, as written by save_pretrained): {e}"
            ) from e
        if path.exists() or weights.startswith(("/", ".", "~")) or not _HUB_ID.match(weights):
            raise FileNotFoundError(
                f"model {name}: no checkpoint folder at {weights}; give the folder of a "
                "transformers checkpoint (config.json and weights) or a hub id"
            ) from e
        from huggingface_hub import is_offline_mode

        why = "offline mode is on and it is not" if is_offline_mode() else "it is not"
        raise OSError(
            f"model {name}: cannot load {weights!r}: neither a folder here nor a hub checkpoint "
            f"that could be fetched ({why} in the local Hugging Face cache). Download it first "
            f"(`hf download {weights}`, online) or set model.weights to a checkpoint folder. "
            f"Cause: {type(e).__name__}: {e}"
        ) from e


class Wav2Vec2CTC(nn.Module):
    """`transformers.Wav2Vec2ForCTC` (MMS too) behind the speech models' `(x, lengths)` interface.

    With `pretrained` the checkpoint's weights are loaded and its CTC head (if any) is replaced
    by a fresh one of `vocab_size` outputs; without, only its architecture is built (a release's
    own weights are loaded next). Waves are normalised to zero mean and unit variance over their
    true length, as `Wav2Vec2FeatureExtractor` does; an attention mask is passed only to
    checkpoints with layer-normalised feature encoders (for group norm, wav2vec2-base style,
    `transformers` documents zero padding without a mask).
    """

    def __init__(
        self,
        weights: str,
        vocab_size: int,
        pretrained: bool = True,
        dropout: float = 0.0,
        freeze_feature_encoder: bool = True,
        normalize: bool = True,
        **config: Any,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForCTC, Wav2Vec2ForCTC

        overrides = {
            "vocab_size": vocab_size,
            "pad_token_id": BLANK,
            "ctc_loss_reduction": "mean",
            "ctc_zero_infinity": True,
            **dict.fromkeys(DROPOUT_KEYS, dropout),
            **config,
        }
        cfg = _load_config("wav2vec2_ctc", weights, **overrides)
        if getattr(cfg, "model_type", None) != "wav2vec2":
            raise ValueError(
                f"model wav2vec2_ctc: {weights} is a {getattr(cfg, 'model_type', '?')!r} "
                "checkpoint; this model needs a Wav2Vec2 one (wav2vec2, XLS-R, MMS)"
            )
        source = str(Path(weights).expanduser()) if Path(weights).expanduser().exists() else weights
        if pretrained:
            # dtype: transformers 5 defaults to "auto" (the checkpoint's dtype); train in fp32.
            try:
                model = Wav2Vec2ForCTC.from_pretrained(
                    source, config=cfg, ignore_mismatched_sizes=True, dtype=torch.float32
                )
            except OSError as e:
                raise OSError(
                    f"model wav2vec2_ctc: cannot load the weights of {weights} (its config was "
                    "found): a checkpoint folder needs model.safetensors or pytorch_model.bin; a "
                    f"hub id must be downloaded in full first. Cause: {e}"
                ) from e
        else:  # architecture only
            model = AutoModelForCTC.from_config(cfg, dtype=torch.float32)
        self.model = model
        self.vocab_size = vocab_size
        self.normalize = normalize
        self.use_attention_mask = cfg.feat_extract_norm == "layer"
        if freeze_feature_encoder:
            self.model.freeze_feature_encoder()

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames of the logits for waves of `lengths` samples (before clamping to T')."""
        lengths = lengths.long()
        fn = getattr(self.model, "_get_feat_extract_output_lengths", None)
        if fn is not None:
            return fn(lengths).long()
        cfg = self.model.config  # fallback: the conv stack's arithmetic, as transformers does it
        steps = list(zip(cfg.conv_kernel, cfg.conv_stride, strict=True))
        if getattr(cfg, "add_adapter", False):
            steps += [(1, cfg.adapter_stride)] * cfg.num_adapter_layers
        for kernel, stride in steps:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        lengths = lengths.to(device=x.device, dtype=torch.long)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        x = x.float() * mask  # zero padding, whatever the caller padded with
        if self.normalize:
            n = lengths.clamp(min=1)[:, None].float()
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean) * mask).pow(2).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * mask
        attention_mask = mask.long() if self.use_attention_mask else None
        logits = self.model(input_values=x, attention_mask=attention_mask).logits
        out_lengths = self.output_lengths(lengths).clamp(min=0, max=logits.shape[1])
        return logits, out_lengths


@register_model(usecase="speech", input="wave", licence="that of the checkpoint")
def wav2vec2_ctc(
    pretrained: bool = False,
    weights: str | None = None,
    vocab_size: int = 0,
    dropout: float = 0.0,
    freeze_feature_encoder: bool = True,
    mask_time_prob: float | None = None,
    layerdrop: float = 0.0,
    **_: Any,
) -> Wav2Vec2CTC:
    """A Wav2Vec2 / MMS checkpoint (`model.weights`: a folder or hub id, e.g. facebook/mms-300m)
    fine-tuned with CTC on our character vocabulary (`vocab_size` includes the blank at 0).

    `mask_time_prob` overrides the checkpoint's SpecAugment time masking (None: keep it);
    `layerdrop` defaults to 0, as in the MMS fine-tuning recipe (and safe under DDP)."""
    if not weights:
        raise ValueError(
            "model wav2vec2_ctc needs model.weights: a checkpoint folder or hub id "
            "(e.g. facebook/mms-300m)"
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 1:
        raise ValueError(
            f"model wav2vec2_ctc needs vocab_size > 1 (the characters plus the CTC blank at "
            f"index 0), got {vocab_size!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model wav2vec2_ctc: dropout must be in [0, 1), got {dropout!r}")
    config: dict[str, Any] = {"layerdrop": layerdrop}
    if mask_time_prob is not None:
        config["mask_time_prob"] = mask_time_prob
    return Wav2Vec2CTC(
        str(weights),
        vocab_size,
        pretrained=pretrained,
        dropout=dropout,
        freeze_feature_encoder=freeze_feature_encoder,
        **config,
    )
