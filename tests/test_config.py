import subprocess
import sys
from pathlib import Path

import pytest

from usecases.core.config import ConfigError, build_config, compose
from usecases.core.registry import get_usecase

from .conftest import REPO

EXPERIMENTS = sorted(p.stem for p in (REPO / "configs/experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_smoke_profile(experiment):
    # Experiments are named after their use case: crop_* (crop disease), mt_* (translation),
    # speech_* (speech).
    prefix = experiment.split("_")[0]
    usecase = {"mt": "translation", "speech": "speech"}.get(prefix, "crop_disease")
    data = compose([f"experiment={experiment}", "profile=smoke"], usecase=usecase)
    cfg = get_usecase(usecase).config(data)
    assert cfg.profile == "smoke"
    assert cfg.trainer.max_steps == 2  # profile wins...
    assert cfg.name  # ...and each experiment names its release
    expected_model = {
        "crop_mobilenet_v3_small": "mobilenet_v3_small",
        "crop_resnet18": "resnet18",
        "mt_full": "pre_nano",
        "speech_full": "crnn",
    }
    assert cfg.model.name == expected_model.get(experiment, "efficientnet_lite0")
    if experiment == "speech_full":  # its own release beside the default one
        assert cfg.name == "crnn_hau.full"
    if experiment == "mt_full":  # the default's recipe, longer
        assert cfg.name == "pre_nano.full" and cfg.data.beams == 1
        assert cfg.data.tokens_per_batch == 2000 and cfg.model.dropout == 0.0
        # FLORES dev trains it, so it has its own prepared corpus beside the default's
        assert (
            cfg.data.train_on_flores_dev and cfg.data.flores_dev_heldout >= cfg.data.val_sentences
        )
        assert cfg.paths.processed != compose([], usecase=usecase)["paths"]["processed"]
        assert cfg.trainer.average_checkpoints == 5
    if usecase == "crop_disease":
        assert cfg.model.image_size == 64


def test_default_composition_values():
    cfg = get_usecase("crop_disease").config(compose([], usecase="crop_disease"))
    assert cfg.name == "efficientnet_lite0" and cfg.model.pretrained
    assert cfg.trainer.device == "cpu" and cfg.trainer.max_steps == -1
    assert cfg.data.sources[0]["file"] == "ibean_leaf_256.tar"


def test_gpu_trainer_group():
    cfg = get_usecase("crop_disease").config(compose(["trainer=gpu"], usecase="crop_disease"))
    assert (cfg.trainer.device, cfg.trainer.precision, cfg.trainer.channels_last) == (
        "cuda",
        "bf16",
        True,
    )


def test_unknown_field_is_named_with_a_suggestion():
    data = compose([], usecase="crop_disease")
    data["trainer"]["max_epoch"] = 3
    with pytest.raises(
        ConfigError, match=r"trainer.max_epoch' \(did you mean trainer.max_epochs\?\)"
    ):
        get_usecase("crop_disease").config(data)


def test_wrong_type_is_named():
    data = compose(["trainer.max_epochs=three"], usecase="crop_disease")
    with pytest.raises(ConfigError, match="trainer.max_epochs: expected an integer"):
        build_config(data)


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="model=nonexistent"):
        compose(["model=nonexistent"], usecase="crop_disease")


def test_params_yaml_is_in_sync_with_configs():
    r = subprocess.run(
        [sys.executable, "-m", "usecases.cli", "params", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_pipeline_runs_name_existing_configs():
    from usecases.core.config import compose_params

    params = compose_params()
    assert set(params["crop_disease"]) >= {"efficientnet_lite0"}
    for name, cfg in params["crop_disease"].items():
        assert cfg["name"] == name and Path(cfg["paths"]["raw"]).parts[0] == "data"
