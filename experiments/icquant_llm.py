"""ICQuant on real language models: SmolLM2-135M perplexity on a held-out Austen novel, and
per-layer weight error on all-MiniLM-L6-v2.

Every nn.Linear of SmolLM2 but the tied ``lm_head`` (210 layers, 106M weights) is quantized by
each method, the model is scored on the same fixed windows of *Persuasion* (tokens the model is
not calibrated on), and the weights are restored. Methods:

- as shipped (the GGUF Q4_1 weights, 4 bits + a float16 scale and minimum per 32 = 5 bpw);
- round-to-nearest on the textbook grid (:class:`compress_extras.AsymmetricRTN`: min-max with an
  integer zero point, so 0 is a level; groups of 128 or 64 weights *inside* each row) and Lloyd
  (k-means) codebooks, at 2, 3 and 4 bits, per output channel and per group;
- the same grids with GPTQ error compensation (:func:`compress_extras.gptq_quantize`, activation
  order, dampening 0.01), the Hessian of every layer from one pass of the dense model over the
  calibration windows of *Emma* (the statistics the layer MIP and ``allocate_bits`` use; not
  re-measured on the partly quantized model, as the GPTQ paper does);
- ICQuant (5% outliers per row, index-coded) with RTN (inliers on the float-minimum grid,
  ``"rtn"``, or on the integer-zero-point grid with an exact zero, ``"asym"``) and with Lloyd at 2
  and 3 bits, without and with compensation (mask and grids fixed from W; the compensated
  weights stored through :meth:`ICQuantized.recode`, so their bits are counted from the same
  bytes);
- GPTQ on a per-row Lloyd codebook (2 and 3 bits, 2^b float16 levels per row) fitted plainly or
  weighted by each weight's sensitivity (SqueezeLLM's non-uniform levels,
  :class:`compress_extras.LloydColumns`): by the Hessian's diagonal (each input's energy on the
  calibration windows) or by the empirical Fisher diagonal (squared per-window gradients of the
  next-token loss, :func:`compress_extras._sensitivities.fisher_diagonal`);
- ICQuant with a bit-allocation plan: every layer picks (b in {2,3,4}) x (gamma in {0, 5%}) under
  an average of 2.3 and 3.3 bits per weight, distortion measured as the output error on the
  calibration windows (:func:`compress_extras.icquant.icquant_model`), without and with
  compensation (``compensate=Compensation(act_order=True)``: the knapsack chooses among
  compensated options).

Bits per weight are counted from the encoded bytes of every ICQuant layer (codes, index streams,
metadata, headers) and, for the RTN grid, from its stored arrays (b-bit codes, a float16 scale and
a b-bit zero point per row or group), over the quantized layers' weights. MiniLM: the relative
weight error ``||W_hat - W||^2 / ||W - mean||^2`` of every Linear for the same quantizers (no
compensation: it aims at the output error, not the weight error).

    python experiments/icquant_llm.py [--windows 24] [--window 256] [--threads 2] [--toy]

Writes ``experiments/results/icquant_llm.json`` and ``icquant_llm.png``; prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from _common import RESULTS, save_figure, write_json
from tqdm import tqdm

from compress_extras import (
    AsymmetricRTN,
    AverageBits,
    Compensation,
    LloydColumns,
    gptq_quantize,
    hessian_from_statistics,
)
from compress_extras._compensation import compensated_weight
from compress_extras._sensitivities import fisher_diagonal
from compress_extras.icquant import ICQuantOption, icquant_model
from compress_extras.llm import (
    austen_novels,
    fixed_windows,
    linear_layers,
    load_minilm,
    load_smollm2,
    perplexity,
)
from spr import collect_input_statistics

Q4_1_BITS = 4 + 2 * 16 / 32  # GGUF Q4_1: 4-bit codes, a float16 scale and minimum per 32


GPTQ = Compensation(act_order=True)


@dataclass(frozen=True)
class LloydCodebook:
    """GPTQ on a per-row Lloyd codebook, plain (``weighting="none"``) or weighted by each
    weight's sensitivity, ``"hessian"`` (H's diagonal) or ``"fisher"`` (module docstring):
    b-bit codes plus 2^b float16 levels per row."""

    bits: int
    weighting: str = "none"

    @property
    def name(self) -> str:
        return f"lloyd{self.bits}-{self.weighting}"

    def storage_bits(self, W: torch.Tensor) -> float:
        return float(self.bits * W.numel() + W.shape[0] * 2**self.bits * 16)

    def quantize(self, W: torch.Tensor, H: torch.Tensor, fisher: torch.Tensor | None):
        sensitivity = {"none": None, "hessian": H.diagonal().float(), "fisher": fisher}
        columns = LloydColumns(self.bits, sensitivity=sensitivity[self.weighting])
        return gptq_quantize(W, H, columns, block_size=GPTQ.block_size, damp=GPTQ.damp,
                             act_order=GPTQ.act_order)


class HQQOption:
    """HQQ (Badri & Shaji 2023; the ``hqq`` package, calibration-free half-quadratic fitting of a
    scale and zero point per group of ``group_size`` weights inside rows) as an anchor: ``bits``
    counts the b-bit codes plus a float16 scale and zero point per group."""

    def __init__(self, nbits: int, group_size: int) -> None:
        self.nbits, self.group_size = nbits, group_size
        self.name = f"hqq{nbits}-g{group_size}"

    def quantize(self, W: torch.Tensor) -> torch.Tensor:
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
        layer.weight.data.copy_(W.detach().float())
        config = BaseQuantizeConfig(nbits=self.nbits, group_size=self.group_size)
        quantized = HQQLinear(layer, config, compute_dtype=torch.float32, device="cpu")
        return quantized.dequantize().reshape(W.shape).to(W.dtype)

    def storage_bits(self, W: torch.Tensor) -> float:
        return float(W.numel() * (self.nbits + 2 * 16 / self.group_size))


def hqq_available() -> bool:
    try:
        import hqq.core.quantize  # noqa: F401
    except ImportError:
        return False
    return True


def plain(b: int, quantizer: str, group: int | None = None) -> ICQuantOption:
    return ICQuantOption(b, 0.0, quantizer, group)


def rtn(b: int, group: int | None = None) -> AsymmetricRTN:
    return AsymmetricRTN(b) if group is None else AsymmetricRTN(b, "group", group)


Option = AsymmetricRTN | ICQuantOption | HQQOption | LloydCodebook


def methods(toy: bool) -> list[tuple[str, str, Option | None, float | None, bool]]:
    """(label, family, uniform option or None, allocation budget or None, compensated)."""
    rows: list[tuple[str, str, Option | None, float | None, bool]] = []
    for b in (2, 3) if toy else (2, 3, 4):
        rows.append((f"RTN {b}-bit per channel", "rtn per channel", rtn(b), None, False))
        if not toy:
            rows.append((f"RTN {b}-bit per group 128", "rtn g128", rtn(b, 128), None, False))
            rows.append((f"Lloyd {b}-bit per channel", "lloyd per channel", plain(b, "lloyd"),
                         None, False))
            rows.append((f"Lloyd {b}-bit per group 64", "lloyd g64", plain(b, "lloyd", 64),
                         None, False))
    gptq = [(3, None)] if toy else [(2, 64), (3, None), (3, 128), (3, 64), (4, None), (4, 128)]
    for b, group in gptq:
        where = "per channel" if group is None else f"per group {group}"
        rows.append((f"GPTQ RTN {b}-bit {where}", "gptq rtn", rtn(b, group), None, True))
    for b in (3,) if toy else (2, 3):
        for weighting in ("none", "hessian", "fisher"):
            rows.append((f"GPTQ Lloyd {b}-bit per channel, {weighting} weights", "gptq lloyd",
                         LloydCodebook(b, weighting), None, True))
    icquant = ((2, 0.05, "rtn"), (2, 0.05, "asym")) if toy else (
        (2, 0.05, "rtn"), (3, 0.05, "rtn"), (2, 0.05, "asym"), (3, 0.05, "asym"),
        (2, 0.05, "lloyd"), (3, 0.05, "lloyd"), (2, 0.1, "lloyd"))
    for b, ratio, q in icquant:
        label = f"ICQuant-{q.upper()} {b}-bit + {100 * ratio:g}% outliers"
        option = ICQuantOption(b, ratio, q)
        rows.append((label, f"icquant {q}", option, None, False))
        if q in ("lloyd", "asym") or toy:
            rows.append((f"GPTQ {label}", f"gptq icquant {q}", option, None, True))
    if not toy and hqq_available():
        for b, group in ((4, 64), (4, 128), (3, 64), (3, 128)):
            rows.append((f"HQQ {b}-bit per group {group}", "hqq", HQQOption(b, group), None,
                         False))
    for compensated in (False, True):
        for budget in (2.3, 3.3):
            rows.append((f"{'GPTQ ' if compensated else ''}ICQuant plan, {budget} bits average",
                         "gptq icquant plan" if compensated else "icquant plan", None, budget,
                         compensated))
    return rows


@torch.no_grad()
def hessians_of(model, names, calibration) -> dict:
    """Per layer, H = X^T X / N (float32) of its inputs over the calibration windows."""
    with collect_input_statistics(model, names, chunk_size=None) as stats:
        for batch in tqdm(calibration.split(4), desc="calibration statistics", leave=False):
            model(batch)
    return {n: hessian_from_statistics(s).float() for n, s in stats.items()}


def fishers_of(model, names, calibration) -> dict:
    """Per layer, the empirical Fisher diagonal of its weight: the mean over the calibration
    windows of the squared gradient of the window's next-token loss (float32)."""
    def loss(output, tokens):
        return F.cross_entropy(output.logits[0, :-1].float(), tokens[0, 1:])

    weights = [model.get_submodule(n).weight for n in names]
    fisher = fisher_diagonal(model, weights, [(calibration, calibration)], loss,
                             max_samples=len(calibration), progress=True)
    return {n: f.float() for n, f in zip(names, fisher, strict=True)}


@torch.no_grad()
def apply_uniform(model, names, option, hessians=None, fishers=None) -> tuple[float, int]:
    """Write ``option``'s reconstruction (GPTQ-compensated with ``hessians``) into every layer;
    (total bits, total weights)."""
    bits, weights = 0.0, 0
    for name in tqdm(names, desc=option.name, leave=False):
        W = model.get_submodule(name).weight
        if isinstance(option, LloydCodebook):
            fisher = None if fishers is None else fishers[name]
            W.copy_(option.quantize(W, hessians[name], fisher))
            bits += option.storage_bits(W)
            weights += W.numel()
            continue
        W_hat = None if hessians is None else compensated_weight(option, W, hessians[name], GPTQ)
        if isinstance(option, ICQuantOption):
            coded = option.code(W) if W_hat is None else option.code(W).recode(W_hat)
            W_hat = coded.dequantize(dtype=W.dtype)
            bits += 8.0 * coded.stored_bytes
        else:
            W_hat = option.quantize(W) if W_hat is None else W_hat
            bits += option.storage_bits(W)
        W.copy_(W_hat)
        weights += W.numel()
    return bits, weights


def smollm2_rows(args) -> tuple[list[dict], dict]:
    model, tokenizer = load_smollm2()
    names = linear_layers(model)[: args.max_layers]
    originals = {n: model.get_submodule(n).weight.detach().clone() for n in names}
    novels = austen_novels()
    held_out = torch.tensor(tokenizer(novels[args.held_out]).input_ids)
    calib_ids = torch.tensor(tokenizer(novels[args.calibration]).input_ids)
    windows = fixed_windows(held_out, args.window, args.windows)
    calibration = fixed_windows(calib_ids, args.window, args.calibration_windows)
    setup = {"model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized)", "layers": len(names),
             "layer_names": "all Linear but the tied lm_head" if args.max_layers is None
             else f"the first {len(names)} Linear layers",
             "weights": sum(W.numel() for W in originals.values()),
             "held_out": args.held_out, "held_out_tokens": held_out.numel(),
             "windows": args.windows, "window": args.window,
             "calibration": args.calibration, "calibration_windows": args.calibration_windows}

    def restore() -> None:
        for n in names:
            model.get_submodule(n).weight.data.copy_(originals[n])

    rows, plans, hessians, fishers = [], {}, None, None
    start = time.perf_counter()
    ppl = perplexity(model, windows)
    rows.append({"method": "as shipped (Q4_1)", "family": "shipped", "bits_per_weight": Q4_1_BITS,
                 "perplexity": ppl, "seconds": time.perf_counter() - start})
    print(f"{'as shipped (Q4_1)':44s} {Q4_1_BITS:6.3f} bpw  perplexity {ppl:8.3f}", flush=True)
    for label, family, option, budget, compensated in methods(args.toy):
        if args.families and family not in args.families:
            continue
        start = time.perf_counter()
        row = {"method": label, "family": family, "compensated": compensated}
        if compensated and hessians is None:
            hessians = hessians_of(model, names, calibration)
            row["statistics_seconds"] = time.perf_counter() - start
        if isinstance(option, LloydCodebook) and option.weighting == "fisher" and fishers is None:
            fishers = fishers_of(model, names, calibration)
            row["fisher_seconds"] = time.perf_counter() - start
        if option is not None:
            bits, weights = apply_uniform(model, names, option, hessians if compensated else None,
                                          fishers)
            row.update(option=option.name, bits_per_weight=bits / weights)
        else:  # the options are measured once; the second budget re-solves the knapsack
            plan = plans.get(compensated)
            if plan is None:
                plan = icquant_model(model, budget, bits=(2, 3, 4), outlier_ratios=(0.0, 0.05),
                                     quantizer=args.plan_quantizer, layers=names,
                                     calibration=calibration, sensitivity="output",
                                     compensate=GPTQ if compensated else None)
            else:
                plan = plan.with_budget(AverageBits(budget))
                plan.apply(model)
            plans[compensated] = plan
            chosen = {}
            for o in plan.options:
                chosen[o] = chosen.get(o, 0) + 1
            row.update(budget=budget, bits_per_weight=plan.average_bits, options=chosen,
                       solver={k: plan.solver.get(k) for k in ("status", "gap", "seconds")})
        row["quantize_seconds"] = time.perf_counter() - start
        row["perplexity"] = perplexity(model, windows)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(f"{label:44s} {row['bits_per_weight']:6.3f} bpw  perplexity "
              f"{row['perplexity']:8.3f}", flush=True)
        restore()
    return rows, setup


@torch.no_grad()
def minilm_rows(args) -> list[dict]:
    model, _ = load_minilm()
    names = linear_layers(model)
    options = [rtn(2), rtn(3), rtn(4), plain(2, "lloyd"), plain(3, "lloyd"),
               ICQuantOption(2, 0.05, "rtn"), ICQuantOption(3, 0.05, "rtn"),
               ICQuantOption(2, 0.05, "lloyd")]
    rows = []
    for name in tqdm(names, desc="MiniLM layers", leave=False):
        W = model.get_submodule(name).weight.detach()
        energy = float(((W - W.mean(dim=1, keepdim=True)) ** 2).sum())
        for option in options:
            if isinstance(option, ICQuantOption):
                coded = option.code(W)
                W_hat, bits = coded.dequantize(), coded.bits_per_weight
                index_bits = coded.index_bits_per_weight
            else:
                W_hat, index_bits = option.quantize(W), 0.0
                bits = option.storage_bits(W) / W.numel()
            error = float(((W_hat - W) ** 2).sum())
            rows.append({"layer": name, "shape": list(W.shape), "option": option.name,
                         "relative_mse": error / energy, "bits_per_weight": bits,
                         "index_bits_per_weight": index_bits})
    return rows


def minilm_summary(rows: list[dict]) -> list[dict]:
    summary = {}
    for r in rows:
        s = summary.setdefault(r["option"], {"option": r["option"], "layers": 0, "mse": 0.0,
                                             "bits": 0.0})
        s["layers"] += 1
        s["mse"] += r["relative_mse"]
        s["bits"] += r["bits_per_weight"]
    return [{"option": s["option"], "mean_relative_mse": s["mse"] / s["layers"],
             "mean_bits_per_weight": s["bits"] / s["layers"], "layers": s["layers"]}
            for s in summary.values()]


def series(row: dict) -> str:
    """The plotted line of a row: its family; the weighted codebooks by their weighting."""
    if row["family"] == "gptq lloyd":
        return f"gptq lloyd, {row['option'].split('-')[1]} weights"
    return row["family"]


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    markers = {"hqq": "h", "rtn per channel": "o", "rtn g128": "s", "lloyd per channel": "^",
               "lloyd g64": "v", "icquant rtn": "D", "icquant asym": "d", "icquant lloyd": "P",
               "icquant plan": "*", "gptq rtn": "s", "gptq lloyd, none weights": "^",
               "gptq lloyd, hessian weights": "<", "gptq lloyd, fisher weights": ">",
               "gptq icquant lloyd": "P", "gptq icquant rtn": "D", "gptq icquant asym": "d",
               "gptq icquant plan": "*", "shipped": "X"}
    for i, (name, marker) in enumerate(markers.items()):
        pts = sorted((r["bits_per_weight"], r["perplexity"]) for r in rows if series(r) == name)
        if pts:  # tab20: a colour of its own for each of the 18 lines
            ax.plot(*zip(*pts, strict=True), marker=marker, label=name, color=plt.cm.tab20(i),
                    linestyle="-" if len(pts) > 1 else "none", markersize=7)
    ax.set_xlabel("bits per weight (counted from the encoded bytes)")
    ax.set_ylabel("perplexity on held-out windows (log)")
    ax.set_yscale("log")
    ax.set_title("SmolLM2-135M: perplexity against bits per weight")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--calibration-windows", type=int, default=128)
    parser.add_argument("--held-out", default="persuasion")
    parser.add_argument("--calibration", default="emma")
    parser.add_argument("--plan-quantizer", default="lloyd", choices=("rtn", "lloyd"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-layers", type=int, default=None,
                        help="quantize only the first this many Linear layers")
    parser.add_argument("--toy", action="store_true",
                        help="2 windows of 32 tokens, the first 7 layers, fewer methods, no "
                        "MiniLM: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--families", nargs="+", default=None,
                        help="run only these method families (e.g. hqq)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other families' rows of the existing JSON (with "
                        "--families): add one family to a finished run")
    args = parser.parse_args()
    if args.toy:
        args.windows, args.window, args.calibration_windows, args.max_layers = 2, 32, 1, 7
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows, setup = smollm2_rows(args)
    name = "icquant_llm_toy" if args.toy else "icquant_llm"
    minilm = [] if args.toy or args.families else minilm_rows(args)
    if args.merge and (args.out / f"{name}.json").exists():
        old = json.loads((args.out / f"{name}.json").read_text())
        ran = {r["family"] for r in rows}  # this run's (with the shipped row, rows[0])
        kept = [r for r in old["smollm2"] if r["family"] not in ran]
        rows = rows[:1] + kept + rows[1:]  # the shipped row first
        minilm = minilm or old["minilm"]
    summary = minilm_summary(minilm)
    write_json(args.out / f"{name}.json", {
        "setup": {**setup, "device": "cpu", "threads": args.threads, "torch": torch.__version__,
                  "machine": platform.processor() or platform.machine(), "toy": args.toy,
                  "plan_quantizer": args.plan_quantizer},
        "smollm2": rows, "minilm": minilm, "minilm_summary": summary})
    plot(rows, args.out / f"{name}.png")

    print("\n| method | bits/weight | perplexity |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['bits_per_weight']:.3f} | {r['perplexity']:.2f} |")
    if summary:
        print("\n| MiniLM option | mean bits/weight | mean relative weight MSE |\n|---|---:|---:|")
        for s in summary:
            print(f"| {s['option']} | {s['mean_bits_per_weight']:.3f} | "
                  f"{s['mean_relative_mse']:.4f} |")


if __name__ == "__main__":
    main()
