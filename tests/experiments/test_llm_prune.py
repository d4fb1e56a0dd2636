"""experiments/llm_prune.py --toy (a tiny random Llama, random token ids, 30% of the MLP removed):
every method x refit x allocation gives a record under the same MLP-parameter limit, the knapsack
records share one allocation, the certificates are filled where they apply, the JSON and the
plot are written where asked (never over the committed results), our smaller model is saved and
equals the masked one, and ``--resume`` runs only what is missing."""

import json

import pytest
import torch

from tests.experiments.importing import import_experiment

pytest.importorskip("transformers", reason="the llm extra (transformers, gguf) is not installed")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    script = import_experiment("llm_prune")
    out = tmp_path_factory.mktemp("llm_prune") / "toy.json"
    committed = script.OUT.read_bytes() if script.OUT.exists() else None
    threads = torch.get_num_threads()
    try:
        payload = script.main(["--toy", "--removed", "0.3", "--out", str(out), "--no-progress",
                               "--osscar-time", "0.05", "--save", str(out.parent / "models")])
    finally:
        torch.set_num_threads(threads)
    assert (script.OUT.read_bytes() if script.OUT.exists() else None) == committed
    return script, out, payload


def test_every_variant_meets_the_same_budget(toy):
    script, out, payload = toy
    records = payload["records"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    assert out.with_suffix(".png").stat().st_size > 0
    assert len(records) == len(script.METHODS) * 2 * 2
    dense = payload["setup"]["mlp_params_dense"]
    limit = int(0.7 * dense)
    for r in records:
        assert r["mlp_params_limit"] == limit and r["mlp_params"] <= limit and r["met"]
        assert r["perplexity"] > 1 and r["prune_seconds"] > 0 and len(r["widths"]) == 3
    knapsack = {tuple(r["widths"]) for r in records if r["allocation"] == "knapsack"
                and r["method"] != "flap"}  # FLAP's biases take room: its own allocation
    assert len(knapsack) == 1
    ours = next(r for r in records if r["name"] == "mip+refit/knapsack/30%")
    assert ours["layer_gap_median"] is not None and 0 <= ours["layer_gap_max"] <= 1
    assert ours["knapsack_gap"] <= 1e-6
    assert ours["max_logit_difference_vs_masked"] < 1e-4
    from compress_extras.llm._pruned_model import load_pruned, mlp_widths

    assert mlp_widths(load_pruned(out.parent / "models" / "ours-30")) == ours["widths"]
    baseline = next(r for r in records if r["name"] == "wanda/uniform/30%")
    assert baseline["layer_gap_median"] is None and baseline["knapsack_gap"] is None


def test_resume_runs_only_what_is_missing(toy):
    script, out, payload = toy
    threads = torch.get_num_threads()
    try:
        again = script.main(["--toy", "--removed", "0.3", "0.5", "--methods", "mip", "--out",
                             str(out), "--resume", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    names = [r["name"] for r in again["records"]]
    assert names[: len(payload["records"])] == [r["name"] for r in payload["records"]]
    assert sorted(names[len(payload["records"]):]) == sorted(
        ["mip+refit/knapsack/50%", "mip+refit/uniform/50%", "mip/knapsack/50%",
         "mip/uniform/50%"])
