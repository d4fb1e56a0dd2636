"""Step time of the demo's CNN with 1 and 2 torch threads, idle and under a competing CPU load.

The model, batch and optimiser of ``spr demo`` (``small_cnn`` width 16, 28x28 one-channel images,
batch 128, SGD with momentum). For each condition — no extra load, then ``k`` competing
CPU-bound processes started by this script (each a busy loop that ends by itself after
``--compete-seconds`` and is killed at the end of its condition at the latest) — the thread
counts alternate in rounds of ``--steps`` timed steps, so drift of the machine (other users' jobs)
hits every variant alike; medians over all timed steps. Ratios are taken within the same process
and the same condition. The machine's own load average (other users) is recorded with each
condition; it is *not* idle when others work on it. The load average is a one-minute mean, so
it catches up with competitors started seconds before only later ("auto threads" is what
``spr._threads.default_threads`` would pick at the start of the condition).

    python experiments/bench_threads.py [--threads 1 2] [--competitors 0 1 2] [--rounds 5]

Prints a table and writes ``experiments/results/bench_threads.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _common import RESULTS, write_json

from spr._threads import available_cores, default_threads, load_average
from spr.models import small_cnn

BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def start_competitors(k: int, seconds: float) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=seconds)])
             for _ in range(k)]
    time.sleep(1.0)  # let them get scheduled
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--competitors", type=int, nargs="+", default=[0, 1, 2],
                        help="numbers of competing busy processes, one condition each")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per condition")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per thread count "
                        "and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--compete-seconds", type=float, default=240.0,
                        help="each competing process ends by itself after this long")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = small_cnn(10, 1, width=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))

    def step() -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    cores = available_cores()
    conditions = []
    for k in args.competitors:
        load_before = load_average()
        procs = start_competitors(k, args.compete_seconds) if k else []
        try:
            times: dict[int, list[float]] = {t: [] for t in args.threads}
            for _ in range(args.rounds):
                for t in args.threads:
                    torch.set_num_threads(t)
                    for _ in range(args.warmup):
                        step()
                    times[t] += [step() for _ in range(args.steps)]
            load_after = load_average()
        finally:
            stop(procs)
        median = {t: 1000 * statistics.median(v) for t, v in times.items()}
        base = median[args.threads[0]]
        conditions.append({
            "competitors": k,
            "load_average_before": load_before, "load_average_after": load_after,
            "auto_threads_at_start": default_threads(cores, load_before),
            "median_ms": {str(t): round(m, 1) for t, m in median.items()},
            "mean_ms": {str(t): round(1000 * statistics.fmean(v), 1) for t, v in times.items()},
            "steps": {str(t): len(v) for t, v in times.items()},
            f"ratio_to_{args.threads[0]}_thread": {
                str(t): round(m / base, 3) for t, m in median.items()},
        })
        print(f"{k} competitors (load average {load_before:.2f} -> {load_after:.2f}): "
              + ", ".join(f"{t} thread(s) {m:.0f} ms" for t, m in median.items()), flush=True)

    first = args.threads[0]
    print()
    print("| competing processes | load avg. at start | auto threads | "
          + " | ".join(f"{t} thread(s), ms/step" for t in args.threads) + " | "
          + " | ".join(f"{t} vs {first} thread(s)" for t in args.threads[1:]) + " |")
    print("|" + "---|" * (3 + 2 * len(args.threads) - 1))
    for c in conditions:
        ratios = c[f"ratio_to_{first}_thread"]
        print(f"| {c['competitors']} | {c['load_average_before']:.2f} | "
              f"{c['auto_threads_at_start']} | "
              + " | ".join(f"{c['median_ms'][str(t)]:.0f}" for t in args.threads) + " | "
              + " | ".join(f"{ratios[str(t)]:.2f}x" for t in args.threads[1:]) + " |")
    write_json(RESULTS / "bench_threads.json", {
        "what": "median ms per SGD step of small_cnn (width 16), batch 128, 28x28x1, CPU",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cores": cores, "os_cpu_count": os.cpu_count()},
        "torch": torch.__version__,
        "settings": vars(args),
        "conditions": conditions,
    })
    print(f"wrote {RESULTS / 'bench_threads.json'}")


if __name__ == "__main__":
    main()
