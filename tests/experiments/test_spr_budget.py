"""experiments/spr_budget.py at toy size: the budgeted run ends at most at the threshold run's
MACs, from the same SPR-trained network, and the JSON records both decisions."""

import json

import pytest
import torch

from spr.data import DatasetNotFoundError, fashion_mnist
from tests.experiments.importing import import_experiment


@pytest.mark.slow
def test_budget_run_meets_the_threshold_runs_macs(tmp_path):
    try:
        fashion_mnist("test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed: run `make data`")
    script = import_experiment("spr_budget")
    threads = torch.get_num_threads()
    try:
        result = script.main(["--toy", "--lams", "20", "--out", str(tmp_path / "runs"),
                              "--results", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    runs = result["runs"]["lam20"]
    threshold, budget = runs["threshold"], runs["budget"]
    assert budget["macs_pruned"] <= threshold["macs_pruned"]
    assert budget["accuracy_spr"] == threshold["accuracy_spr"]  # the same SPR-trained network
    assert budget["certificate"]["met"] and "certificate" not in threshold
    assert json.loads((tmp_path / "spr_budget_toy.json").read_text())["runs"]["lam20"] == runs
