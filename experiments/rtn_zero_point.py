"""Why the grid's zero matters on SmolLM2: the weights that meet the attention sink's massive
activations are small, and only a grid with an exact zero rounds them small.

At 3 bits per channel, min-max round-to-nearest with the minimum stored as a float (no level at
0; ``ICQuantOption(3, 0.0, "rtn")``, the ICQuant inlier grid) and with an integer zero point
(``AsymmetricRTN(3)``, 0 a level) have almost the same weight error, yet perplexity differs several
fold (experiments/icquant_llm.py). For every Linear this script takes the input column j* where
position 0 of the windows is largest against the other positions, and measures for both grids:

- ``col_weight``: mean |W[:, j*]| over mean |W| (how small the weights on that column are);
- ``col_error``: mean |E[:, j*]| over mean |E|, E = W_hat - W (how large their rounding error is);
- ``first`` / ``rest``: the relative output error ``||X E^T||^2 / ||X W^T||^2`` at position 0 and
  at positions >= 1 (X the layer's inputs on windows of *Emma*).

    python experiments/rtn_zero_point.py [--windows 4] [--bits 3] [--max-layers N]

Writes ``experiments/results/rtn_zero_point.json``; prints the layers with the most extreme
position-0 activations.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from _common import RESULTS, write_json

from compress_extras import AsymmetricRTN, ICQuantOption
from compress_extras.llm import austen_novels, fixed_windows, linear_layers, load_smollm2


@torch.no_grad()
def inputs_of(model, names, ids) -> dict:
    captured = {}
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda m, a, n=n: captured.__setitem__(n, a[0].detach())) for n in names]
    try:
        model(ids)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def measure(W, X, grids) -> dict:
    first, rest = X[:, 0], X[:, 1:].reshape(-1, X.shape[-1])
    column = int(first.abs().mean(0).argmax())
    row = {"column": column,
           "activation_ratio": float(first[:, column].abs().mean() / rest.abs().mean()),
           "col_weight": float(W[:, column].abs().mean() / W.abs().mean())}
    for name, option in grids.items():
        E = option.quantize(W) - W
        row[name] = {
            "first": float(((first @ E.T) ** 2).mean() / ((first @ W.T) ** 2).mean()),
            "rest": float(((rest @ E.T) ** 2).mean() / ((rest @ W.T) ** 2).mean()),
            "col_error": float(E[:, column].abs().mean() / E.abs().mean()),
            "weight_mse": float((E ** 2).mean())}
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--bits", type=int, default=3)
    parser.add_argument("--max-layers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "rtn_zero_point.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, tokenizer = load_smollm2()
    names = linear_layers(model)[: args.max_layers]
    ids = fixed_windows(torch.tensor(tokenizer(austen_novels()["emma"]).input_ids),
                        args.window, args.windows)
    grids = {"float_min": ICQuantOption(args.bits, 0.0, "rtn"),
             "integer_zero": AsymmetricRTN(args.bits)}
    inputs = inputs_of(model, names, ids)
    layers = {n: measure(model.get_submodule(n).weight.detach(), inputs[n], grids) for n in names}
    summary = {grid: {key: statistics.median(r[grid][key] for r in layers.values())
                      for key in ("first", "rest", "col_error", "weight_mse")} for grid in grids}
    payload = {"setup": {"model": "SmolLM2-135M-Instruct", "windows": args.windows,
                         "window": args.window, "bits": args.bits, "layers": len(names),
                         "grids": {k: v.name for k, v in grids.items()}},
               "median": summary, "layers": layers}
    write_json(args.out, payload)
    print(f"{'layer':34s} {'act x':>7s} {'|W| col':>8s}   float-min: first / rest / |E| col"
          "   integer-zero: first / rest / |E| col")
    for name, r in sorted(layers.items(), key=lambda kv: -kv[1]["activation_ratio"])[:6]:
        f, z = r["float_min"], r["integer_zero"]
        print(f"{name:34s} {r['activation_ratio']:7.0f} {r['col_weight']:8.3f}   "
              f"{f['first']:.4f} / {f['rest']:.4f} / {f['col_error']:.2f}      "
              f"{z['first']:.4f} / {z['rest']:.4f} / {z['col_error']:.2f}")
    for grid, s in summary.items():
        print(f"median over layers, {grid}: first {s['first']:.4f}, rest {s['rest']:.4f}, "
              f"|E| on the column {s['col_error']:.2f}, weight MSE {s['weight_mse']:.3g}")
    return payload


if __name__ == "__main__":
    main()
