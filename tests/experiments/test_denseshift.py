"""Smoke tests of experiments/denseshift.py and experiments/bench_shift.py: each script's whole
path in --toy mode into a temporary directory (JSON written, plot written, table printed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(script, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--toy", "--threads", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


@pytest.mark.slow
def test_denseshift_toy(tmp_path):
    stdout = run("denseshift.py", tmp_path)
    payload = json.loads((tmp_path / "denseshift_cpu-toy.json").read_text())
    assert (tmp_path / "denseshift_cpu-toy.png").stat().st_size > 10_000
    assert payload["toy"] is True and payload["device"] == "cpu"
    models = [r["model"] for r in payload["fmnist"]["rows"]]
    assert models[0] == "float" and "denseshift3" in models and "shift3" in models
    assert "denseshift-mixed(avg3)" in models
    plan = payload["fmnist"]["plan"]
    assert plan["total_bits"] <= plan["budget_bits"]
    for r in payload["fmnist"]["rows"]:
        assert 0 <= r["accuracy"] <= 100
    if (ROOT / "data" / "fsdd" / "digits.npz").exists():
        assert [r["model"] for r in payload["speech"]["rows"]][:2] == ["float", "denseshift3"]
    assert "| task | model |" in stdout


@pytest.mark.slow
def test_bench_shift_toy(tmp_path):
    stdout = run("bench_shift.py", tmp_path)
    payload = json.loads((tmp_path / "bench_shift_cpu-toy.json").read_text())
    assert (tmp_path / "bench_shift_cpu-toy.png").stat().st_size > 5_000
    methods = {r["method"] for r in payload["rows"]}
    assert methods == {"float", "float (unfused products)", "exponent-add (guard)",
                       "exponent-add (no guard)"}
    guarded = [r for r in payload["rows"] if r["method"] == "exponent-add (guard)"]
    assert all(r["max_abs_diff_vs_float"] < 1e-2 for r in guarded)  # same weights, same result
    assert "| B x K x O |" in stdout
