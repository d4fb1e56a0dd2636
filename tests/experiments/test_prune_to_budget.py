"""experiments/prune_to_budget.py --quick (ResNet-20, 50% of the dense MACs, seed 0, 64
calibration images): every method meets the same MAC limit, Torch-Pruning's bisection lands just
under it without touching the residual streams, the +refit variants keep Torch-Pruning's
supports, the certificates say what applies, the JSON/plot are written where asked (never over the
committed results) and ``--resume`` runs only what is missing."""

import json
from pathlib import Path

import pytest
import torch

from tests.experiments.importing import import_experiment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    from spr.data import DatasetNotFoundError, fashion_mnist

    try:
        fashion_mnist("test")
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not installed (run `make data`): {err}")
    module = import_experiment("prune_to_budget")
    for name in module.MODELS:
        if not module.weights_path(module.WEIGHTS, name).exists():
            pytest.skip(f"no dense weights for {name}: run experiments/train_dense.py")
    return module


@pytest.fixture(scope="module")
def quick(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("ptb") / "quick.json"
    committed = script.OUT.read_bytes() if script.OUT.exists() else None
    threads = torch.get_num_threads()
    try:
        payload = script.main(["--quick", "--out", str(out), "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert (script.OUT.read_bytes() if script.OUT.exists() else None) == committed
    return script, out, payload


def test_every_method_meets_the_same_budget(quick):
    script, out, payload = quick
    records = {r["method"]: r for r in payload["records"]}
    assert sorted(records) == sorted(script.METHODS)
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    dense = payload["dense"]["resnet20"]
    limit = int(0.5 * dense["macs"])
    for method, r in records.items():
        assert (r["model"], r["budget"], r["seed"]) == ("resnet20", 0.5, 0)
        assert r["macs_limit"] == limit and r["macs_dense"] == dense["macs"], method
        assert 0 < r["macs"] <= limit and r["params"] < dense["params"], method
        assert 0 <= r["one_shot_accuracy"] <= 100 and 0 <= r["finetuned_accuracy"] <= 100
        assert len(r["widths"]) == 9 and all(0 <= w <= 64 for w in r["widths"])
        assert r["prune_seconds"] > 0
    # the knapsack fills the budget (within one channel's MACs); uniform widths need not
    for method in ("ours", "magnitude+alloc", "osscar+alloc"):
        assert records[method]["macs_over_limit"] > 0.97, method
        assert records[method]["certificate"]["met"] is True
        assert records[method]["certificate"]["knapsack_gap"] is not None
    # a proven bound only for the MIP; the others have none (null in the JSON)
    assert records["ours"]["certificate"]["layer_gap_max"] is not None
    assert records["uniform-mip"]["certificate"]["layer_gap_max"] is not None
    assert records["uniform-mip"]["certificate"]["knapsack_gap"] is None
    for method in ("magnitude+alloc", "osscar+alloc", "tp-magnitude", "tp-taylor"):
        assert records[method]["certificate"]["layer_gap_max"] is None, method


def test_torch_pruning_lands_under_the_budget_on_block_channels_only(quick):
    script, _, payload = quick
    records = {r["method"]: r for r in payload["records"]}
    for importance in ("magnitude", "taylor"):
        plain, refit = records[f"tp-{importance}"], records[f"tp-{importance}+refit"]
        tp = plain["tp"]
        assert plain["residual_widths_unchanged"] is True
        assert 0.97 < tp["macs_over_limit"] <= 1.0
        assert tp["macs_at_n_minus_1"] > plain["macs_limit"]  # one channel fewer is over
        assert tp["channels_total"] == 16 * 3 + 32 * 3 + 64 * 3
        assert all(w >= 1 for w in plain["widths"])
        # the +refit variant refits the very channels Torch-Pruning kept
        assert refit["widths"] == plain["widths"] and refit["macs"] == plain["macs"]


def test_aggregate_plot_and_resume(quick):
    script, out, payload = quick
    rows = payload["aggregate"]
    assert {r["method"] for r in rows} == set(script.METHODS)
    ours = next(r for r in rows if r["method"] == "ours")
    record = next(r for r in payload["records"] if r["method"] == "ours")
    assert ours["one_shot"] == {"mean": record["one_shot_accuracy"], "std": 0.0, "n": 1}
    assert {c["baseline"] for c in payload["comparisons"]} == set(script.METHODS) - {"ours"}
    assert payload["config"]["test_samples"] == 200 and payload["config"]["calibration"] == 64
    assert payload["config"]["quick"] is True and payload["notes"]["resnet56"]
    assert {"cpu_model", "loadavg", "torch", "threads"} <= set(payload["machine"])
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # drop one record; --resume recomputes only it and keeps the others as they were
    kept = [r for r in payload["records"] if r["method"] != "tp-magnitude"]
    out.write_text(json.dumps({**payload, "records": kept}))
    again = script.main(["--quick", "--out", str(out), "--no-progress", "--resume"])
    torch.set_num_threads(1)
    assert len(again["records"]) == len(payload["records"])
    assert again["command"] == payload["command"] and len(again["resumed_with"]) == 1
    new = {r["method"]: r for r in again["records"]}
    for r in kept:
        assert new[r["method"]] == r
    old = next(r for r in payload["records"] if r["method"] == "tp-magnitude")
    assert new["tp-magnitude"]["widths"] == old["widths"]  # magnitude reads no data


def test_refuses_to_overwrite_the_committed_results_and_missing_data(script, monkeypatch,
                                                                    tmp_path):
    with pytest.raises(SystemExit):
        script.main(["--quick", "--out", str(script.OUT)])

    from spr.data import DatasetNotFoundError

    def missing(split, root=None):
        raise DatasetNotFoundError("fashion-mnist: no files under /nowhere")

    monkeypatch.setattr(script, "fashion_mnist", missing)
    with pytest.raises(SystemExit, match="Fashion-MNIST is not installed"):
        script.main(["--quick", "--no-progress", "--out", str(tmp_path / "q.json")])
