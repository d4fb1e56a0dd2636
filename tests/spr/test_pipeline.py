"""run_pipeline on digits: results that check out independently, resume after an interruption
that ends where a straight run ends, and folders that are never silently mixed or overwritten."""

import hashlib
import json

import pytest
import torch

import spr
from spr import PruneConfig, run_pipeline
from spr._pipeline import PipelineError
from spr.data import DatasetNotFoundError, digits
from spr.models import small_cnn

CONFIG = PruneConfig(
    arch="small_cnn", dataset="digits", epochs_reference=2, epochs_spr=2, epochs_finetune=2,
    lam=1.0, lr=0.05, lr_finetune=0.02, batch_size=64, augment=True, max_drop=2.0,
    threshold_samples=400, threshold_tol=0.01,
)


def quiet(config, out, **kw):
    return run_pipeline(config, out, progress=False, log=lambda message: None, **kw)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, quiet(CONFIG, out)


def test_results_check_out_independently(straight):
    out, summary = straight
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(summary))
    pruned = spr.load_pruned(out / "pruned", small_cnn(10, 1))
    test = digits("test").loader(256, shuffle=False)
    assert spr.evaluate(pruned, test) == pytest.approx(summary["accuracy_finetuned"])
    assert spr.count_params(pruned) == summary["params_pruned"]
    assert spr.count_params(small_cnn(10, 1)) == summary["params_dense"]
    assert summary["params_pruned"] <= summary["params_dense"]
    assert summary["widths_pruned"] == spr.layer_widths(pruned)
    assert summary["threshold"]["train_accuracy_before"] - summary["threshold"][
        "train_accuracy_after"] < CONFIG.max_drop
    assert summary["decision"] == "threshold"
    assert len(summary["history"]["spr_history"]) == CONFIG.epochs_spr
    assert PruneConfig.load(out / "config.json") == CONFIG


class Interrupt:
    """Stand-in for train_epoch that raises KeyboardInterrupt at its n-th call."""

    def __init__(self, monkeypatch, n):
        import spr._pipeline as pipeline

        self.calls, self.n, self.real = 0, n, pipeline.train_epoch
        monkeypatch.setattr(pipeline, "train_epoch", self)

    def __call__(self, *args, **kw):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*args, **kw)


@pytest.mark.parametrize("interrupt_at", [4, 6])  # 2nd SPR epoch; 2nd fine-tuning epoch
def test_resume_ends_where_a_straight_run_ends(straight, tmp_path, monkeypatch, interrupt_at):
    straight_out, straight_summary = straight
    Interrupt(monkeypatch, interrupt_at)
    with pytest.raises(KeyboardInterrupt):
        quiet(CONFIG, tmp_path)
    dense_sha = sha(tmp_path / "dense" / "model.safetensors")
    monkeypatch.undo()

    summary = quiet(CONFIG, tmp_path)

    assert sha(tmp_path / "dense" / "model.safetensors") == dense_sha  # never rewritten
    resumed = spr.load_pruned(tmp_path / "pruned", small_cnn(10, 1)).state_dict()
    reference = spr.load_pruned(straight_out / "pruned", small_cnn(10, 1)).state_dict()
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert summary["accuracy_finetuned"] == straight_summary["accuracy_finetuned"]


def test_a_folder_of_another_run_is_refused(straight, tmp_path):
    quiet(CONFIG.replace(epochs_spr=1, epochs_finetune=0), tmp_path)
    dense_sha = sha(tmp_path / "dense" / "model.safetensors")
    with pytest.raises(PipelineError, match="another config.*lam"):
        quiet(CONFIG.replace(epochs_spr=1, epochs_finetune=0, lam=2.0), tmp_path)
    summary = quiet(CONFIG.replace(epochs_spr=1, epochs_finetune=0, lam=2.0), tmp_path,
                    restart=True)
    assert summary["config"]["lam"] == 2.0
    # the reference settings did not change, so the dense model was kept as it was
    assert sha(tmp_path / "dense" / "model.safetensors") == dense_sha


def test_missing_dataset_says_how_to_get_it_and_writes_nothing(tmp_path):
    config = CONFIG.replace(dataset="fashion-mnist", data_root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="make data"):
        quiet(config, tmp_path / "run")
    assert not (tmp_path / "run" / "dense").exists()


def test_group_lasso_baseline_runs_the_same_protocol(tmp_path):
    config = CONFIG.replace(penalty="group_lasso", epochs_spr=1, epochs_finetune=1)
    summary = quiet(config, tmp_path)
    assert summary["config"]["penalty"] == "group_lasso"
    assert summary["params_pruned"] <= summary["params_dense"]


def test_a_budget_replaces_the_threshold_search(tmp_path):
    """SPR training as before, then spr.prune_to_budget decides: the budget holds on the saved
    network and the results say which decided."""
    config = CONFIG.replace(budget_macs=0.45, budget_params=5000.0, budget_seconds=5.0,
                            epochs_finetune=1)
    summary = quiet(config, tmp_path)
    assert summary["decision"] == "budget" and "threshold" not in summary
    pruned = spr.load_pruned(tmp_path / "pruned", small_cnn(10, 1))
    dense_macs = summary["macs_dense"]
    macs = spr.count_macs(pruned, torch.zeros(1, 1, 8, 8))
    assert macs == summary["macs_pruned"] <= 0.45 * dense_macs
    assert spr.count_params(pruned) == summary["params_pruned"] <= 5000
    certificate = summary["budget"]
    assert certificate["budget"]["met"] and len(certificate["layers"]) == 4
    assert all(row["bound"] <= row["objective"] * (1 + 1e-9) for row in certificate["layers"])
    assert straight_decision(tmp_path) == "budget"


def straight_decision(out) -> str:
    return json.loads((out / "results.json").read_text())["decision"]


def test_a_budget_the_network_cannot_meet_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="smallest network allowed"):
        quiet(CONFIG.replace(budget_macs=0.001), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_results_record_the_input_padding(tmp_path):
    """ResNets see 28x28 (here 8x8) images zero-padded to 32x32; results.json says so, so the
    saved model can be evaluated as the run evaluated it (issue 18). No training: 0 epochs."""
    config = PruneConfig(arch="resnet20", dataset="digits", train_samples=64, test_samples=64,
                         threshold_samples=64, threshold_tol=0.1, epochs_reference=0,
                         epochs_spr=0, epochs_finetune=0, max_drop=100.0)
    summary = quiet(config, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["input"] == summary["input"]
    assert (saved["input"]["image_size"], saved["input"]["pad_to"],
            saved["input"]["model_input_size"], saved["input"]["channels"]) == (
                [8, 8], 32, [32, 32], 1)
    pruned = spr.load_pruned(tmp_path / "pruned", spr.models.resnet20(in_channels=1))
    test = digits("test").subset(64, seed=0).loader(512, shuffle=False,
                                                    pad_to=saved["input"]["pad_to"])
    assert spr.evaluate(pruned, test) == pytest.approx(saved["accuracy_finetuned"])


def test_small_cnn_results_say_no_padding(straight):
    assert straight[1]["input"]["pad_to"] is None
    assert straight[1]["input"]["model_input_size"] == [8, 8]


def test_a_long_run_is_announced_before_training(tmp_path, monkeypatch):
    import spr._pipeline as pipeline

    monkeypatch.setattr(pipeline, "WARN_SECONDS", 0.0)  # every run is "long"
    Interrupt(monkeypatch, 1)  # stop at the first epoch: the messages come before it
    lines = []
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(CONFIG, tmp_path, progress=False, log=lines.append)
    assert lines[0].startswith("warning: this run will take about")
    assert "--preset quick" in lines[0] and "resumed" in lines[0]
    assert lines[1].startswith("expected time: about") and "SGD steps at" in lines[1]


def test_the_estimate_counts_the_steps_left():
    from spr._estimate import estimate_seconds
    from spr._run import _Run

    run = _Run(CONFIG, progress=False)
    per_epoch = len(run.loader("reference", 0))
    fresh = estimate_seconds(run, {"stage": "reference", "epoch": 0, "records": {}}, False)
    assert fresh["steps"] == per_epoch * (2 + 2 + 2) and fresh["seconds"] > 0
    later = estimate_seconds(run, {"stage": "spr", "epoch": 1, "records": {}}, True)
    assert later["epochs_left"] == {"reference": 0, "spr": 1, "finetune": 2}
    assert estimate_seconds(run, {"stage": "done", "epoch": 0, "records": {}}, True) is None


def test_the_protocol_is_the_checkpoint_stages_in_order():
    from spr._run import STAGES
    from spr._stages import PROTOCOL, Stage

    assert [stage.name for stage in PROTOCOL] + ["done"] == list(STAGES)
    assert [stage.checkpoint for stage in PROTOCOL] == [False, True, True, True]
    with pytest.raises(AttributeError):
        PROTOCOL[0].name = "dense"  # frozen
    assert all(isinstance(stage, Stage) for stage in PROTOCOL)


def test_an_appended_stage_runs_last_on_the_shared_context(tmp_path):
    """Adding a stage is appending one: it gets the checkpoint of the fine-tuned network and
    the run's records, and the run is checkpointed after it. No training: 0 epochs."""
    from spr._stages import PROTOCOL, Stage

    def export(context):
        model, _ = context.resume_model()
        context.records["exported_widths"] = spr.layer_widths(model)
        context.save(model, "exported")
        return model

    config = CONFIG.replace(epochs_reference=0, epochs_spr=0, epochs_finetune=0)
    summary = quiet(config, tmp_path, stages=(*PROTOCOL, Stage("export", export)))
    assert summary["exported_widths"] == summary["widths_pruned"]
    exported = spr.load_pruned(tmp_path / "exported", small_cnn(10, 1))
    assert spr.layer_widths(exported) == summary["widths_pruned"]
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert (state["stage"], state["epoch"]) == ("done", 0)
    assert state["records"]["exported_widths"] == summary["widths_pruned"]


def test_a_budgeted_run_interrupted_in_fine_tuning_resumes(tmp_path, monkeypatch):
    """The checkpoint after the budgeted decision holds "budget", not "threshold": the
    run-folder check accepts either decision (it used to refuse to resume)."""
    config = CONFIG.replace(budget_macs=0.45, budget_seconds=5.0)
    Interrupt(monkeypatch, CONFIG.epochs_reference + CONFIG.epochs_spr + 2)
    with pytest.raises(KeyboardInterrupt):
        quiet(config, tmp_path)
    monkeypatch.undo()
    summary = quiet(config, tmp_path)
    assert summary["decision"] == "budget"
    assert summary["macs_pruned"] <= 0.45 * summary["macs_dense"]
    assert len(summary["history"]["finetune_history"]) == CONFIG.epochs_finetune
