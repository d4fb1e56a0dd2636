"""The `spr` command: `spr demo --quick` through the installed console script (what `make run`
runs, at smoke-test size), `spr prune` options and its error messages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spr import PruneConfig
from spr._cli import build_parser, main

SMALL = ["--arch", "small_cnn", "--dataset", "digits", "--epochs-reference", "1",
         "--epochs-spr", "1", "--epochs-finetune", "1", "--threshold-samples", "200",
         "--threshold-tol", "0.05", "--no-progress"]


@pytest.mark.slow
def test_demo_quick_runs_from_the_console_script(tmp_path):
    script = Path(sys.executable).with_name("spr")
    if not script.exists():
        pytest.skip("the console script is not installed (pip install -e .)")
    done = subprocess.run([str(script), "demo", "--quick", "--no-progress", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "results.json").read_text())
    for key in ("accuracy_dense", "accuracy_finetuned", "params_pruned", "macs_pruned", "mip",
                "indicators"):
        assert key in summary
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert "parameters" in done.stdout and "MACs per image" in done.stdout


def test_every_config_field_is_an_option():
    args = build_parser().parse_args(["prune", "--out", "x", "--lam", "2.5", "--no-augment",
                                      "--train-samples", "none", "--M-scale", "1.5"])
    from spr._cli import _config_from

    config = _config_from(args)
    assert (config.lam, config.augment, config.train_samples, config.M_scale) == (
        2.5, False, None, 1.5)
    option_names = {a.dest for a in build_parser()._subparsers._group_actions[0]
                    .choices["prune"]._actions}
    assert {f for f in PruneConfig.__dataclass_fields__} <= option_names


def test_config_file_then_options(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(PruneConfig(lam=3.0, epochs_spr=7).to_json())
    from spr._cli import _config_from

    config = _config_from(build_parser().parse_args(
        ["prune", "--out", "x", "--config", str(path), "--epochs-spr", "9"]))
    assert (config.lam, config.epochs_spr) == (3.0, 9)


def test_prune_runs_and_resumes_in_place(tmp_path, capsys):
    assert main(["prune", "--out", str(tmp_path), *SMALL]) == 0
    assert (tmp_path / "pruned" / "model.safetensors").exists()
    first = (tmp_path / "results.json").read_text()
    assert main(["prune", "--out", str(tmp_path), *SMALL]) == 0  # finished: nothing to redo
    assert json.loads((tmp_path / "results.json").read_text())["params_pruned"] == json.loads(
        first)["params_pruned"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--max-drop", "-1"], "max_drop must be >= 0"),
     (["--dataset", "fashion-mnist", "--data-root", "{tmp}/none"], "make data"),
     (["--arch", "resnet21"], "unknown architecture")],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, extra, message):
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    assert main(["prune", "--out", str(tmp_path / "run"), *SMALL, *extra]) == 2
    assert message in capsys.readouterr().err


def test_another_architecture_in_the_same_folder_is_refused(tmp_path, capsys):
    assert main(["prune", "--out", str(tmp_path), *SMALL]) == 0
    dense = (tmp_path / "dense" / "model.safetensors").read_bytes()
    assert main(["prune", "--out", str(tmp_path), *SMALL, "--arch", "resnet20"]) == 2
    assert "another config" in capsys.readouterr().err
    assert (tmp_path / "dense" / "model.safetensors").read_bytes() == dense


def test_prune_resnet20_on_fashion_mnist_tiny(tmp_path):
    """The issue's command at toy size: padding to 32x32, option-A shortcuts, removal."""
    from spr.data import DatasetNotFoundError, fashion_mnist

    try:
        fashion_mnist("test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed: run `make data`")
    status = main(["prune", "--out", str(tmp_path), "--arch", "resnet20", "--data",
                   "fashion-mnist", "--train-samples", "256", "--threshold-samples", "128",
                   "--test-samples", "256",
                   "--epochs-reference", "1", "--epochs-spr", "1", "--epochs-finetune", "1",
                   "--lam", "4", "--max-drop", "5", "--threshold-tol", "0.05",
                   "--no-progress"])
    assert status == 0
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["config"]["arch"] == "resnet20"
    import torch

    from spr import count_macs
    from spr.models import resnet20

    assert summary["macs_dense"] == count_macs(resnet20(in_channels=1), torch.zeros(1, 1, 32, 32))
    assert summary["params_pruned"] <= summary["params_dense"]
