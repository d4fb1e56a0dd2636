"""PruneConfig: frozen, validated, JSON round trip."""

import dataclasses

import pytest

from spr import PruneConfig


@pytest.mark.parametrize(
    "changes",
    [{}, {"arch": "resnet56", "lam": 3.5, "train_samples": 1000},
     {"data_root": "/tmp/x", "augment": False, "threshold_samples": None, "device": "cuda:1"}],
)
def test_json_round_trip(changes, tmp_path):
    config = PruneConfig(**changes)
    assert PruneConfig.from_json(config.to_json()) == config
    (tmp_path / "c.json").write_text(config.to_json())
    assert PruneConfig.load(tmp_path / "c.json") == config


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PruneConfig().lam = 2.0  # type: ignore[misc]


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(ValueError, match="no setting.*'lamda'.*'lam'"):
        PruneConfig.from_dict({"lamda": 1.0})


@pytest.mark.parametrize(
    "field, value, message",
    [("max_drop", -0.01, "max_drop"), ("alpha", 0.0, "alpha"), ("lam", -1.0, "lam"),
     ("epochs_spr", -1, "epochs_spr"), ("epochs_finetune", 1.5, "epochs_finetune"),
     ("struct_threshold", 1.0, "struct_threshold"), ("batch_size", 0, "batch_size"),
     ("lr", 0.0, "lr"), ("lr_finetune", -1.0, "lr_finetune"), ("momentum", 1.0, "momentum"),
     ("M_scale", 0.0, "M_scale"),
     ("train_samples", 0, "train_samples"), ("threshold_tol", 1.0, "threshold_tol"),
     ("device", "gpu7", "device"), ("penalty", "l1", "penalty"),
     ("penalty_weights", "flops", "penalty_weights")],
)
def test_bad_values_name_the_setting(field, value, message):
    with pytest.raises(ValueError, match=message):
        PruneConfig(**{field: value})


def test_unknown_names_are_refused_at_once():
    with pytest.raises(ValueError, match="unknown architecture 'resnet21'.*resnet20"):
        PruneConfig(arch="resnet21")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fashion-mnist"):
        PruneConfig(dataset="mnist")
