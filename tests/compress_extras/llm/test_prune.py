"""Structured pruning of a Llama-style model's MLP neurons to a budget (compress_extras.llm
prune_llm): on a tiny random Llama (3 layers, hidden 32, MLP 64, 4 heads sharing 2 key/value
heads, vocabulary 100) the physically smaller model computes what the masked dense model does
(also after a save/load round trip), the budget holds for every method and allocation, and the
knapsack's allocation is the brute-force optimum of the curves it read. On SmolLM2 (skipped with
the reason without `make data`): pruning one MLP layer to half its neurons with refit lowers that
layer's reconstruction error against keeping the dense weights, and the certificate's bound lies
below the objective."""

import itertools
import math

import numpy as np
import pytest
import torch

from compress_extras.llm import llm_curves, load_pruned, mlp_parameters, prune_llm, save_pruned
from compress_extras.llm._models import tiny_llama
from compress_extras.llm._pruned_model import mlp_widths
from spr.data import DatasetNotFoundError

transformers = pytest.importorskip("transformers",
                                   reason="the llm extra (transformers, gguf) is not installed")

OPTIONS = {"step": 8, "min_width": 8, "progress": False}


@pytest.fixture(scope="module")
def tiny():
    model = tiny_llama(0)
    calibration = torch.randint(0, 100, (8, 16), generator=torch.Generator().manual_seed(1))
    test = torch.randint(0, 100, (3, 16), generator=torch.Generator().manual_seed(2))
    return model, calibration, test


@pytest.fixture(scope="module")
def curves(tiny):
    model, calibration, _ = tiny
    return llm_curves(model, calibration, **OPTIONS)


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("method", ["mip", "flap", "wanda"])
def test_smaller_model_equals_masked_dense_model(tiny, curves, tmp_path, method):
    model, calibration, test = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = prune_llm(model, calibration, mlp_params=0.6, method=method, curves=curves, **OPTIONS)
    small, masked = plan.apply(model), plan.masked(model)
    assert mlp_widths(small) == [plan.widths[i] for i in range(3)]
    assert mlp_widths(small) != [64, 64, 64] and mlp_widths(masked) == [64, 64, 64]
    assert (small.model.layers[0].mlp.down_proj.bias is not None) == (method == "flap")
    expected = logits(masked, test)
    torch.testing.assert_close(logits(small, test), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected, logits(model, test))  # pruning did change the model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # not edited
    folder = save_pruned(small, tmp_path / "small")
    again = load_pruned(folder)
    assert mlp_widths(again) == mlp_widths(small)
    assert again.lm_head.weight is again.model.embed_tokens.weight  # tied again
    torch.testing.assert_close(logits(again, test), expected, rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "pruned.json"]


@pytest.mark.parametrize(("budget", "method", "allocation"), [
    (0.5, "mip", "knapsack"), (0.8, "magnitude", "knapsack"), (0.8, "flap", "uniform"),
    (0.7, "osscar", "uniform"), (10_000, "wanda", "knapsack")])
def test_budget_holds(tiny, curves, budget, method, allocation):
    model, calibration, _ = tiny
    dense = mlp_parameters(model)
    assert dense == 3 * 3 * 32 * 64
    plan = prune_llm(model, calibration, mlp_params=budget, method=method,
                     allocation=allocation, curves=curves, time_limit=0.1, **OPTIONS)
    limit = budget if isinstance(budget, int) else math.floor(budget * dense)
    small = plan.apply(model)
    measured = mlp_parameters(small)
    b = plan.certificate.budget
    assert measured <= limit and b["met"]
    assert (b["mlp_params"], b["mlp_params_limit"], b["mlp_params_dense"]) == (measured, limit,
                                                                                dense)
    assert b["params"] == sum(p.numel() for p in small.parameters())
    if allocation == "uniform":
        assert len(set(plan.widths.values())) == 1
    per_neuron = 3 * 32
    bias = 3 * 32 if method == "flap" else 0
    if allocation == "uniform":  # the largest common width that fits
        k = next(iter(plan.widths.values()))
        assert k == min(64, (limit - bias) // (3 * per_neuron))
    else:  # the knapsack leaves less than one step of one layer unused
        assert limit - measured < 8 * per_neuron


def test_knapsack_allocation_equals_brute_force(tiny, curves):
    model, calibration, _ = tiny
    per_neuron = 3 * 32
    for budget in (0.45, 0.6, 0.75):
        plan = prune_llm(model, calibration, mlp_params=budget, curves=curves, **OPTIONS)
        limit = plan.certificate.budget["mlp_params_limit"]
        best, argbest = math.inf, None
        for choice in itertools.product(*[range(k.size) for k in curves.ks]):
            widths = [int(curves.ks[g][c]) for g, c in enumerate(choice)]
            if per_neuron * sum(widths) > limit:
                continue
            cost = sum(float(curves.cost[g][c]) for g, c in enumerate(choice))
            if cost < best - 1e-15:
                best, argbest = cost, widths
        chosen = [plan.widths[i] for i in curves.layers]
        total = sum(float(curves.cost[g][list(curves.ks[g]).index(k)])
                    for g, k in enumerate(chosen))
        assert total == pytest.approx(best, rel=1e-9)
        assert plan.certificate.knapsack["objective"] == pytest.approx(best, rel=1e-6)
        assert chosen == argbest
        assert plan.certificate.knapsack["gap"] <= 1e-6


def test_certificate_and_refit_on_the_tiny_model(tiny, curves):
    model, calibration, _ = tiny
    refit = prune_llm(model, calibration, mlp_params=0.6, curves=curves, **OPTIONS)
    plain = prune_llm(model, calibration, mlp_params=0.6, refit=False, curves=curves, **OPTIONS)
    first, first_plain = refit.certificate.layers[0], plain.certificate.layers[0]
    assert torch.equal(refit.keep[0], plain.keep[0])  # same inputs, same greedy support
    assert first["objective"] < first_plain["objective"]
    for row in refit.certificate.layers:
        assert row["bound"] <= row["objective"] and 0 <= row["gap"] <= 1
        assert row["kept"] == row["k"] == refit.widths[row["layer"]]
    summary = refit.certificate.summary()
    assert summary["met"] and 0 < summary["removed"] and summary["layer_gap_median"] <= 1
    assert "knapsack" in refit.certificate.table()


def test_arguments_are_checked(tiny, curves):
    model, calibration, _ = tiny
    with pytest.raises(ValueError, match="below"):
        prune_llm(model, calibration, mlp_params=0.05, curves=curves, **OPTIONS)
    with pytest.raises(ValueError, match="fraction"):
        prune_llm(model, calibration, mlp_params=1.5, curves=curves, **OPTIONS)
    with pytest.raises(ValueError, match="method"):
        prune_llm(model, calibration, mlp_params=0.5, method="random", **OPTIONS)
    with pytest.raises(ValueError, match="Llama-style"):
        prune_llm(torch.nn.Linear(3, 3), calibration, mlp_params=0.5, **OPTIONS)


# ---- SmolLM2 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    from compress_extras.llm import austen_novels, fixed_windows, load_smollm2

    try:
        model, tokenizer = load_smollm2()
        emma = austen_novels()["emma"]
    except DatasetNotFoundError as error:
        pytest.skip(f"SmolLM2 or the Austen text is not installed (make data): {error}")
    ids = torch.tensor(tokenizer(emma[:60_000]).input_ids)
    return model, fixed_windows(ids, 256, 8)


def test_smollm2_one_layer_to_half_with_refit(smollm2):
    model, calibration = smollm2
    layer, width = 2, 1536
    mlp = model.model.layers[layer].mlp
    limit = mlp_parameters(model) - (width // 2) * 3 * 576
    plans = {refit: prune_llm(model, calibration, mlp_params=limit, layers=[layer], refit=refit,
                              allocation="uniform", progress=False) for refit in (True, False)}
    keep = plans[True].keep[layer]
    assert int(keep.sum()) == width // 2 and torch.equal(keep, plans[False].keep[layer])
    # the reconstruction error of down_proj's output, measured on the calibration windows
    captured = []

    def capture(module, args):
        captured.append(args[0])
        raise StopIteration  # the rest of the forward pass is not needed

    handle = mlp.down_proj.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            for batch in calibration.split(4):
                with pytest.raises(StopIteration):
                    model.model(batch, use_cache=False)
    finally:
        handle.remove()
    X = torch.cat(captured).reshape(-1, width).double()
    W0 = mlp.down_proj.weight.detach().double()
    Y = X @ W0.T
    errors = {refit: float(((X * keep) @ plans[refit].down_weight[layer].double().T - Y)
                           .pow(2).sum()) for refit in plans}
    assert errors[True] < 0.9 * errors[False]
    row = plans[True].certificate.layers[0]
    assert row["layer"] == layer and row["bound"] < row["objective"]
    assert math.isfinite(row["gap"]) and 0 < row["gap"] <= 1
    np.testing.assert_array_less(row["relative"], plans[False].certificate.layers[0]["relative"])
