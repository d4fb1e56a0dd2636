"""Smoke test of experiments/reproduce_spr.py: the script's whole path at toy size (one epoch per
stage, a tiny subset), single-process and under torchrun with two CPU (gloo) processes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "reproduce_spr.py"
KEYS = {"method", "network", "lam", "alpha", "epochs", "accuracy_before_finetune", "accuracy",
        "params", "macs", "params_removed_percent", "macs_removed_percent", "seconds",
        "hardware", "seed"}


def run(tmp_path, runs, launcher=()):
    done = subprocess.run(
        [*launcher, str(SCRIPT), "--toy", "--no-readme", "--runs", runs,
         "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    rows = [json.loads(line) for line in
            (tmp_path / "results" / "reproduce_spr_cpu-toy.jsonl").read_text().splitlines()]
    assert (tmp_path / "results" / "reproduce_spr_cpu-toy.png").stat().st_size > 10_000
    return rows, done.stdout


@pytest.mark.slow
def test_whole_path_at_toy_size(tmp_path):
    rows, stdout = run(tmp_path, "r20-spr-lam10,r20-gl-lam10,r20-tp-lam10", (sys.executable,))
    assert sorted(r["method"] for r in rows) == ["dense", "group_lasso", "spr", "torch_pruning"]
    by = {r["method"]: r for r in rows}
    for r in rows:
        assert KEYS <= set(r) and r["toy"] is True
        assert 0 <= r["accuracy"] <= 100 and r["params"] <= by["dense"]["params"]
    # the magnitude baseline is pruned to at most the SPR run's MACs
    assert by["torch_pruning"]["macs"] <= by["spr"]["macs"]
    assert "| network | method |" in stdout


@pytest.mark.slow
def test_under_torchrun_with_two_gloo_processes(tmp_path):
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2")
    rows, _ = run(tmp_path, "r20-spr-lam10", launcher)
    assert sorted(r["method"] for r in rows) == ["dense", "spr"]
