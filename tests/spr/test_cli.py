"""The `spr` command: `spr demo --quick` through the installed console script (what `make run`
runs, at smoke-test size), `spr prune` options and its error messages."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spr import PruneConfig
from spr._cli import _config_from, build_parser, main


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """main() sets torch's threads (--threads); leave the rest of the session as it was."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

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
    for key in ("accuracy_dense", "accuracy_finetuned", "params_pruned", "macs_pruned",
                "budget", "indicators"):
        assert key in summary
    assert summary["decision"] == "budget" and summary["budget"]["budget"]["met"]
    assert summary["macs_pruned"] <= summary["config"]["budget_macs"] * summary["macs_dense"]
    assert "certificate" in done.stdout
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
     (["--arch", "resnet21"], "unknown architecture"),
     # issue 18: each of these trained, wrote or crashed before the setting was refused
     (["--config", "{tmp}/ten.json"], "ten.json: lam must be a number; got 'ten'"),
     (["--lam", "inf"], "lam must be a finite number >= 0; got inf"),
     (["--lr", "inf"], "lr must be a finite number > 0; got inf"),
     (["--device", "cuda"], "device 'cuda' is not available"),
     (["--device", "cuda:0"], "device 'cuda:0' is not available")],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path, capsys, extra, message):
    if "cuda" in " ".join(extra) and torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    (tmp_path / "ten.json").write_text('{"arch": "small_cnn", "lam": "ten"}')
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    assert main(["prune", "--out", str(tmp_path / "run"), *SMALL, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written or trained


def test_a_diverging_run_exits_2_with_the_fix(tmp_path, capsys):
    assert main(["prune", "--out", str(tmp_path), *SMALL, "--lr", "1e30"]) == 2
    assert "lower the learning rate" in capsys.readouterr().err


# a run interrupted in its second SPR epoch: config.json, dense/ and checkpoint/ (stage "spr",
# epoch 1, with optimizer.pt)
RESUMABLE = ["--arch", "small_cnn", "--dataset", "digits", "--epochs-reference", "1",
             "--epochs-spr", "2", "--epochs-finetune", "1", "--threshold-samples", "200",
             "--threshold-tol", "0.05", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    import spr._pipeline as pipeline

    out = tmp_path_factory.mktemp("interrupted") / "run"
    real, calls = pipeline.train_epoch, []

    def stop_in_the_second_spr_epoch(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "train_epoch", stop_in_the_second_spr_epoch)
        assert main(["prune", "--out", str(out), *RESUMABLE]) == 130
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert (state["stage"], state["epoch"]) == ("spr", 1)
    assert (out / "checkpoint" / "optimizer.pt").exists()
    return out


def _truncate(name):
    def damage(out):
        path = out / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return damage


def _edit_state(**changes):
    def damage(out):
        path = out / "checkpoint" / "state.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return damage


def _files(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "damage, message",
    [(_truncate("checkpoint/optimizer.pt"), r"checkpoint/optimizer\.pt does not load"),
     (_truncate("checkpoint/state.json"), r"checkpoint/state\.json is not valid JSON"),
     (_truncate("config.json"), r"run/config\.json is damaged"),
     (_edit_state(stage="pruning"), r"state\.json: unknown stage 'pruning'"),
     (_edit_state(stage="finetune", epoch=0), r"state\.json: stage 'finetune', but the records "
                                              r"lack \['accuracy_spr'"),
     (_edit_state(stage="prune", epoch=0), r"state\.json: stage 'prune', but the records lack"),
     (_edit_state(epoch=5), r"state\.json: stage 'spr' at epoch 5, but the config has 2"),
     (_edit_state(stage="reference"), r"state\.json: stage 'reference', but the records "
                                      r"already hold \['spr_history'\]")],
    ids=["optimizer.pt", "state.json", "config.json", "unknown stage", "stage skipped ahead",
         "stage prune", "epoch", "stage back"],
)
def test_a_damaged_run_folder_is_refused_and_left_as_it_was(interrupted, tmp_path, capsys,
                                                            damage, message):
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    damage(out)
    before = _files(out)
    assert main(["prune", "--out", str(out), *RESUMABLE]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "--restart" in err and "Traceback" not in err
    assert _files(out) == before  # nothing written, nothing trained


def test_restart_recovers_from_a_damaged_config_json(interrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    _truncate("config.json")(out)
    dense = (out / "dense" / "model.safetensors").stat().st_mtime_ns
    assert main(["prune", "--out", str(out), *RESUMABLE, "--restart"]) == 0
    assert PruneConfig.load(out / "config.json").epochs_spr == 2
    # the reference's settings were unknown, so it was trained again
    assert (out / "dense" / "model.safetensors").stat().st_mtime_ns != dense


def test_the_interrupted_run_resumes_with_its_thread_count(interrupted, tmp_path, capsys,
                                                          monkeypatch):
    from spr import _threads

    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["threads"] == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "available_cores", lambda: 2)
    monkeypatch.setattr(_threads, "load_average", lambda: 0.0)  # auto would take 2 threads
    argv = RESUMABLE[: RESUMABLE.index("--threads")]
    assert main(["prune", "--out", str(out), *argv]) == 0
    assert "torch threads: 1, as in the checkpoint" in capsys.readouterr().out
    assert torch.get_num_threads() == 1
    assert (out / "pruned" / "model.safetensors").exists()


def test_preset_then_config_file_then_options(tmp_path):
    from spr._presets import PRESETS

    def config(*argv):
        return _config_from(build_parser().parse_args(["prune", "--out", "x", *argv]))

    quick = config("--preset", "quick")
    assert {k: getattr(quick, k) for k in PRESETS["quick"]} == PRESETS["quick"]
    assert quick.seed == PruneConfig().seed  # what the preset leaves alone: the default
    # an explicit `none` overrides the preset's value (it is no longer taken for "not given")
    assert config("--preset", "quick", "--train-samples", "none").train_samples is None
    assert config("--preset", "quick", "--lam", "3").lam == 3.0
    assert config("--preset", "quick", "--no-augment").augment is False
    assert config("--preset", "cpu", "--augment").augment is True
    path = tmp_path / "c.json"
    path.write_text('{"lam": 7.0, "epochs_spr": 3}')
    both = config("--preset", "quick", "--config", str(path), "--epochs-spr", "4")
    assert (both.arch, both.lam, both.epochs_spr, both.epochs_reference) == (
        "small_cnn", 7.0, 4, PRESETS["quick"]["epochs_reference"])
    paper = config("--preset", "paper")
    assert (paper.epochs_reference, paper.epochs_spr, paper.epochs_finetune) == (300, 300, 200)
    with pytest.raises(SystemExit):
        config("--preset", "fast")


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--preset {cpu,paper,quick}", "percentage points", "--threads N|auto",
                   "zero-padded to 32x32", "(default: 30)", "quick small CNN"):
        assert phrase in text, phrase
    prune = build_parser()._subparsers._group_actions[0].choices["prune"]
    for action in prune._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 15, action.dest


@pytest.mark.parametrize("command", ["demo", "prune"])
def test_threads_option(command):
    extra = ["--out", "x"] if command == "prune" else []
    parse = build_parser().parse_args
    assert parse([command, *extra, "--threads", "1"]).threads == 1
    assert parse([command, *extra, "--threads", "auto"]).threads is None
    assert parse([command, *extra]).threads is None
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(SystemExit):
            parse([command, *extra, "--threads", bad])


def test_threads_are_set_and_auto_leaves_busy_cores_alone(monkeypatch):
    from spr import _threads

    assert _threads.set_threads(1) == (1, "--threads") and torch.get_num_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "available_cores", lambda: 4)
    monkeypatch.setattr(_threads, "load_average", lambda: 2.6)
    assert _threads.set_threads(None)[0] == 1 == torch.get_num_threads()
    monkeypatch.setattr(_threads, "load_average", lambda: 0.2)
    assert _threads.set_threads(None)[0] == 4
    monkeypatch.setattr(_threads, "load_average", lambda: 9.0)
    assert _threads.set_threads(None)[0] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _threads.set_threads(None) == (3, "OMP_NUM_THREADS")


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
    # how the model was fed, so that evaluating it later gives the same numbers (issue 18)
    assert summary["input"]["image_size"] == [28, 28]
    assert summary["input"]["pad_to"] == 32 and summary["input"]["model_input_size"] == [32, 32]
    from spr import count_macs, evaluate, load_pruned
    from spr.models import resnet20

    pruned = load_pruned(tmp_path / "pruned", resnet20(in_channels=1))
    test = fashion_mnist("test").subset(256, seed=0)
    assert evaluate(pruned, test.loader(512, shuffle=False, pad_to=summary["input"]["pad_to"])
                    ) == pytest.approx(summary["accuracy_finetuned"])
    assert summary["macs_dense"] == count_macs(resnet20(in_channels=1), torch.zeros(1, 1, 32, 32))
    assert summary["params_pruned"] <= summary["params_dense"]
