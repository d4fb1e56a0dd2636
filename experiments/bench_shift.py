"""Speed of the exponent-add reference matmul (multiply by ±2^p as an integer add on the float's
exponent field, float accumulation) against a float matmul of the dequantized weights.

For each size (batch B, in features K, out features O) and dtype (float32, float16) it times

- ``float``: ``x @ W_deq.T`` (the BLAS / cuBLAS baseline, the same weights dequantized);
- ``float (unfused products)``: the same products with ordinary multiplies, materialised and
  summed exactly like the reference (isolates integer add vs float multiply);
- ``exponent-add (guard)``: :func:`compress_extras.shift.shift_linear` with the zero/subnormal/
  overflow guard (bit-exact with ordinary multiplication);
- ``exponent-add (no guard)``: the raw integer path (exact only for normal activations);

as the median of ``--repeats`` runs after a warm-up, and reports each as a ratio to the float
baseline measured in the same process. The exponent-add code is a reference written with torch
integer tensor ops (it materialises the B x O x K products), not a fused kernel, so it is expected
to be much slower than BLAS here; the point is an honest number, not a speed-up claim.

    python experiments/bench_shift.py [--sizes 64x256x256 64x1024x1024 1024x576x64]
        [--repeats 7] [--threads 1] [--device cpu|cuda] [--out experiments/results] [--toy]

Prints a table; writes ``bench_shift_<device>.json`` and ``bench_shift_<device>.png``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import RESULTS, save_figure, write_json  # noqa: E402
from tqdm import tqdm  # noqa: E402

from compress_extras.shift import dequantize, fit_scale, project_codes, shift_linear  # noqa: E402

BITS = 3


def timed(fn, repeats: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def unfused_float(x, W, chunk_elements: int = 1 << 22):
    """``x W^T`` as materialised products ``x_i * W_oi`` (ordinary float multiplies) summed in
    float32, chunked like shift_linear: the same memory traffic as the exponent-add reference,
    so the two differ only in integer add vs float multiply (and the guard)."""
    rows = max(1, chunk_elements // max(1, x.shape[0] * x.shape[1]))
    return torch.cat([(x[:, None, :] * W[None, i:i + rows]).float().sum(-1)
                      for i in range(0, W.shape[0], rows)], dim=1).to(x.dtype)


def bench_one(B: int, K: int, O: int, dtype: torch.dtype, repeats: int, device: torch.device,
              seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(O, K, generator=gen) / K**0.5
    alpha = fit_scale(W, BITS)
    s, p, _ = project_codes(W, alpha, BITS)
    W_deq = dequantize(s, p, alpha, BITS).to(device, dtype)
    x = torch.relu(torch.randn(B, K, generator=gen)).to(device, dtype)  # ReLU: ~half zeros
    s, p, alpha = s.to(device), p.to(device), alpha.to(device)
    ref = (x @ W_deq.T).float()
    out = []
    for method, fn in (
        ("float", lambda: x @ W_deq.T),
        ("float (unfused products)", lambda: unfused_float(x, W_deq)),
        ("exponent-add (guard)", lambda: shift_linear(x, s, p, alpha, BITS, guard=True)),
        ("exponent-add (no guard)", lambda: shift_linear(x, s, p, alpha, BITS, guard=False)),
    ):
        seconds = timed(fn, repeats, device)
        err = (fn().float() - ref).abs().max().item()
        out.append({"B": B, "K": K, "O": O, "dtype": str(dtype).replace("torch.", ""),
                    "method": method, "seconds": seconds,
                    "gmacs_per_s": B * K * O / seconds / 1e9, "max_abs_diff_vs_float": err})
    base = out[0]["seconds"]
    for r in out:
        r["ratio_to_float"] = r["seconds"] / base
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64x256x256", "64x1024x1024",
                                                        "1024x576x64"],
                        help="BxKxO: batch x in features x out features")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--toy", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.toy:
        args.sizes, args.repeats = ["8x64x32"], 2
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    jobs = [(size, dt) for size in sizes for dt in (torch.float32, torch.float16)]
    rows = []
    for (B, K, O), dtype in tqdm(jobs, desc="sizes x dtypes"):
        rows.extend(bench_one(B, K, O, dtype, args.repeats, device))
    lines = ["| B x K x O | dtype | method | ms | GMAC/s | x float time | max abs diff |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['B']}x{r['K']}x{r['O']} | {r['dtype']} | {r['method']} | "
                     f"{1e3 * r['seconds']:.3f} | {r['gmacs_per_s']:.3f} | "
                     f"{r['ratio_to_float']:.1f} | {r['max_abs_diff_vs_float']:.2e} |")
    print("\n".join(lines))
    tag = f"{device.type}{'-toy' if args.toy else ''}"
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    payload = {"device": device.type, "device_name": name, "threads": args.threads,
               "toy": args.toy, "torch": torch.__version__, "platform": platform.platform(),
               "bits": BITS, "repeats": args.repeats, "rows": rows}
    write_json(args.out / f"bench_shift_{tag}.json", payload)
    fig, ax = plt.subplots(figsize=(11, 4))
    labels = list(dict.fromkeys(f"{r['B']}x{r['K']}x{r['O']}\n{r['dtype']}" for r in rows))
    methods = ["float (unfused products)", "exponent-add (guard)", "exponent-add (no guard)"]
    xs = np.arange(len(labels))
    for i, method in enumerate(methods):
        vals = [next(r["ratio_to_float"] for r in rows if r["method"] == method
                     and f"{r['B']}x{r['K']}x{r['O']}\n{r['dtype']}" == lab) for lab in labels]
        ax.bar(xs + (i - 1) * 0.27, vals, 0.27, label=method)
    ax.axhline(1.0, color="k", lw=1, label="float matmul (x @ W_deq.T)")
    ax.set(xticks=xs, xticklabels=labels, yscale="log", ylabel="time / float matmul time",
           title=f"exponent-add reference vs float matmul ({device.type}, threads={args.threads})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(args.out / f"bench_shift_{tag}.png", fig)
    plt.close(fig)
    return payload


if __name__ == "__main__":
    main()
