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
     ("penalty_weights", "flops", "penalty_weights"), ("budget_macs", 0.0, "budget_macs"),
     ("budget_params", -5.0, "budget_params"), ("budget_seconds", 0.0, "budget_seconds")],
)
def test_bad_values_name_the_setting(field, value, message):
    with pytest.raises(ValueError, match=message):
        PruneConfig(**{field: value})


def test_unknown_names_are_refused_at_once():
    with pytest.raises(ValueError, match="unknown architecture 'resnet21'.*resnet20"):
        PruneConfig(arch="resnet21")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fashion-mnist"):
        PruneConfig(dataset="mnist")


@pytest.mark.parametrize(
    "field, value, message",
    [("lam", "ten", r"lam must be a number; got 'ten' \(str\).*without quotes"),
     ("lam", float("inf"), "lam must be a finite number >= 0; got inf"),
     ("lr", float("inf"), "lr must be a finite number > 0; got inf"),
     ("lr_finetune", float("nan"), "lr_finetune must be a finite number"),
     ("momentum", float("nan"), "momentum must be a finite number"),
     ("epochs_spr", True, r"epochs_spr must be an integer; got True \(bool\)"),
     ("batch_size", "128", "batch_size must be an integer"),
     ("augment", "yes", "augment must be true or false"),
     ("train_samples", 1.5, "train_samples must be an integer or null"),
     ("groups", "filters", "groups must be one of"),
     ("max_drop", 101.0, "max_drop .* <= 100")],
)
def test_types_and_finiteness_are_checked_first(field, value, message):
    with pytest.raises(ValueError, match=message):
        PruneConfig(**{field: value})


def test_an_integer_is_a_valid_float_setting():
    assert PruneConfig(lam=10).lam == 10


def test_a_config_file_error_names_the_file_and_the_setting(tmp_path):
    path = tmp_path / "my_run.json"
    path.write_text('{"arch": "small_cnn", "lam": "ten"}')
    with pytest.raises(ValueError, match=r"my_run\.json: lam must be a number; got 'ten'"):
        PruneConfig.load(path)
    path.write_text('{"arch": "small_cnn", "lam": ')
    with pytest.raises(ValueError, match=r"my_run\.json: not valid JSON"):
        PruneConfig.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"my_run\.json: a config file is a JSON object"):
        PruneConfig.load(path)
    path.write_text('{"lam": 3.0}')
    assert PruneConfig.read_settings(path) == {"lam": 3.0}


def test_every_setting_has_a_help_text():
    from spr._config import HELP

    assert set(HELP) == set(PruneConfig.__dataclass_fields__)
    assert all(len(text) > 20 for text in HELP.values())


def test_presets_are_valid_and_overridable():
    from spr._presets import PRESETS, preset_config

    for name in PRESETS:
        assert preset_config(name) == PruneConfig(**{**PruneConfig().to_dict(), **PRESETS[name]})
    paper = preset_config("paper")
    assert (paper.epochs_reference, paper.epochs_spr, paper.epochs_finetune) == (300, 300, 200)
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch_size) == (
        0.1, 0.9, 5e-4, 128)
    quick = preset_config("quick", {"lam": 3.0, "train_samples": None})
    assert (quick.arch, quick.lam, quick.train_samples) == ("small_cnn", 3.0, None)
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        preset_config("fast")


def test_every_penalty_name_has_its_function():
    from spr._config import PENALTIES
    from spr._penalties import PENALTY_FUNCTIONS

    assert set(PENALTIES) == set(PENALTY_FUNCTIONS)
