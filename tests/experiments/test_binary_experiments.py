"""Smoke tests of experiments/binaryvit.py and experiments/random_bias.py: each script's --toy
mode end to end (Fashion-MNIST subset, one epoch) into a temporary directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (ROOT / "data" / "fashion-mnist").is_dir(),
    reason="Fashion-MNIST is not installed in data/fashion-mnist (run `make data`)")


def run(script: str, out: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), "--toy", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def test_binaryvit_toy(tmp_path):
    stdout = run("binaryvit.py", tmp_path)
    payload = json.loads((tmp_path / "binaryvit_cpu-toy.json").read_text())
    assert (tmp_path / "binaryvit_cpu-toy.png").stat().st_size > 10_000
    assert payload["toy"] is True and payload["label"] == "cpu-toy"
    names = [r["name"] for r in payload["rows"]]
    assert names[:6] == ["float teacher", "baseline", "+gap", "+multi_branch", "+affine",
                         "+pyramid"]
    assert names[6].startswith("binary ResNet")
    for r in payload["rows"]:
        assert 0 <= r["accuracy"] <= 100 and r["ops"] == r["bops"] / 64 + r["flops"]
    assert payload["rows"][0]["bops"] == 0 and all(r["bops"] > 0 for r in payload["rows"][1:])
    switches = [(c["gap"], c["multi_branch"], c["affine"], c["pyramid"])
                for c in (r["config"] for r in payload["rows"][1:6])]
    assert switches == [(False, False, False, False), (True, False, False, False),
                        (True, True, False, False), (True, True, True, False),
                        (True, True, True, True)]
    assert "| model | test acc (%) |" in stdout


def test_random_bias_toy(tmp_path):
    stdout = run("random_bias.py", tmp_path)
    payload = json.loads((tmp_path / "random_bias_cpu-toy.json").read_text())
    assert (tmp_path / "random_bias_cpu-toy.png").stat().st_size > 10_000
    assert payload["toy"] is True
    rows = payload["rows"]
    assert {(r["model"], r["init"], r["bias"]) for r in rows} == {
        (m, i, b) for m in ("mlp", "cnn") for i in ("kaiming", "unit")
        for b in ("zero", "uniform", "normal")}
    for r in rows:
        assert len(r["curve_mean"]) == payload["settings"]["epochs"]
        assert 0 <= r["band_init_min"] <= r["band_init_mean"] <= 1
    assert "| model | init | bias |" in stdout
