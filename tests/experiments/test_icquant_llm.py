"""Smoke test of experiments/icquant_llm.py: the whole path in --toy mode (SmolLM2's first seven
layers, two windows of 32 tokens) into a temporary directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_icquant_llm_toy(tmp_path):
    pytest.importorskip("transformers", reason="the llm extra is not installed")
    gguf = ROOT / "data" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.exists() or not (ROOT / "data" / "austen" / "Rdata.rdb").exists():
        pytest.skip("SmolLM2 or the Austen text is not installed (make data)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "icquant_llm.py"), "--toy", "--threads", "1",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    payload = json.loads((tmp_path / "icquant_llm_toy.json").read_text())
    assert (tmp_path / "icquant_llm_toy.png").stat().st_size > 10_000
    rows = {r["method"]: r for r in payload["smollm2"]}
    assert payload["setup"]["toy"] and payload["setup"]["layers"] == 7
    shipped = rows["as shipped (Q4_1)"]["perplexity"]
    assert 5 < shipped < 1000
    icq = rows["ICQuant-RTN 2-bit + 5% outliers"]
    assert 2.0 < icq["bits_per_weight"] < 2.6
    for budget in (2.3, 3.3):
        for prefix in ("", "GPTQ "):
            plan = rows[f"{prefix}ICQuant plan, {budget} bits average"]
            assert plan["bits_per_weight"] <= budget and plan["solver"]["status"] == "optimal"
            assert sum(plan["options"].values()) == 7
    # compensation keeps the grid and its bits, and lowers the perplexity at 3 bits
    plain, gptq = rows["RTN 3-bit per channel"], rows["GPTQ RTN 3-bit per channel"]
    assert gptq["bits_per_weight"] == plain["bits_per_weight"]
    assert gptq["perplexity"] < plain["perplexity"] and gptq["compensated"]
    assert rows["GPTQ ICQuant-RTN 2-bit + 5% outliers"]["bits_per_weight"] == icq[
        "bits_per_weight"]
    # the sensitivity-weighted codebooks: same storage as the plain one, finite perplexity
    lloyd = [rows[f"GPTQ Lloyd 3-bit per channel, {w} weights"] for w in ("none", "hessian",
                                                                          "fisher")]
    assert len({r["bits_per_weight"] for r in lloyd}) == 1 and 3.0 < lloyd[0]["bits_per_weight"]
    assert all(5 < r["perplexity"] < 10_000 for r in lloyd)
    assert "| method | bits/weight | perplexity |" in done.stdout
