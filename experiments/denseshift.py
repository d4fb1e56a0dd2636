"""DenseShift (zero-free power-of-two weights) against float and against a shift network with a
zero code, on Fashion-MNIST (ResNet-20) and on spoken digits (a small ResNet over MFCCs).

Parts (``--parts``, default all three):

- ``fmnist``: ResNet-20 trained in float on a Fashion-MNIST subset, then converted with
  ``to_denseshift`` (first conv and classifier kept float, weights projected to the nearest level)
  at 2, 3 and 4 bits, zero-free and with a zero code, each fine-tuned (QAT) for ``--qat-epochs``;
- ``mixed``: ``allocate_bits`` over ShiftQuant(2/3/4) with the total bits of uniform 3-bit as the
  budget, the plan converted with ``to_denseshift(plan=...)`` and fine-tuned like the others;
- ``speech``: the Free Spoken Digit Dataset as MFCC frames (data/fsdd/digits.npz), each
  utterance cropped/zero-padded to ``--frames`` frames, normalised with training statistics, a
  seeded stratified 80/20 split; a CIFAR-style ResNet-8 over (1, 13, frames) in float and in 2-,
  3- and 4-bit DenseShift (QAT from the float model), reporting held-out accuracy relative to the
  float model (issue 9's bar: 3-bit >= 95% of float).

    python experiments/denseshift.py [--parts fmnist mixed speech] [--epochs 10] [--qat-epochs 3]
        [--train-samples 6000] [--test-samples 2000] [--threads 1] [--out experiments/results]

Prints a table; writes ``denseshift_<tag>.json`` and ``denseshift_<tag>.png`` under ``--out``
(tag ``cpu``, or ``cpu-toy`` with ``--toy``, a seconds-long smoke run).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import RESULTS, save_figure, write_json  # noqa: E402
from tqdm import tqdm  # noqa: E402

from compress_extras import TotalBits, allocate_bits  # noqa: E402
from compress_extras.shift import ShiftQuant, shift_layers, to_denseshift  # noqa: E402
from compress_extras.shift._convert import default_shift_layers  # noqa: E402
from spr._training import evaluate, train  # noqa: E402
from spr.models import CifarResNet, resnet20  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT / "data" / "fsdd" / "digits.npz"


class TensorBatches:
    """Shuffled (x, y) batches of in-memory tensors, with a length (what spr's train wants)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64,
                 shuffle: bool = True, seed: int = 0, shift: int = 0) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator, self.shift = torch.Generator().manual_seed(seed), shift

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.x[idx]
            if self.shift:  # time-shift augmentation: roll each batch by a random offset
                k = int(torch.randint(-self.shift, self.shift + 1, (), generator=self.generator))
                x = torch.roll(x, k, dims=-1)
            yield x, self.y[idx]


def speech_data(frames: int = 32, seed: int = 0, path: Path = FSDD):
    """((x_train, y_train), (x_test, y_test), info): x (N, 1, 13, frames) float32, normalised
    per MFCC coefficient with the training frames' mean/std, zero-padded (after normalisation) or
    centre-cropped to ``frames``; a stratified 80/20 split seeded by ``seed``."""
    data = np.load(path)
    X, lengths, y = data["X"], data["lengths"], data["y"]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: len(members) // 5]] = True
    train_frames = np.concatenate([X[s:s + n] for s, n, t in zip(starts, lengths, test,
                                                                 strict=True) if not t])
    mean, std = train_frames.mean(0), train_frames.std(0) + 1e-6
    out = np.zeros((len(y), 1, X.shape[1], frames), dtype=np.float32)
    for i, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        seq = (X[s:s + n] - mean) / std
        if n > frames:
            off = (n - frames) // 2
            seq = seq[off:off + frames]
        out[i, 0, :, : len(seq)] = seq.T
    xt, yt = torch.from_numpy(out), torch.from_numpy(y.astype(np.int64))
    tr, te = torch.from_numpy(~test), torch.from_numpy(test)
    info = {"utterances": int(len(y)), "train": int(tr.sum()), "test": int(te.sum()),
            "frames": frames, "split": f"stratified 80/20 by digit, seed {seed}",
            "cropped_percent": float(100 * np.mean(lengths > frames)),
            "median_frames": float(np.median(lengths))}
    return (xt[tr], yt[tr]), (xt[te], yt[te]), info


def speech_model(depth: int = 8) -> CifarResNet:
    """A CIFAR-style ResNet (16/32/64 channels, depth 6n+2) over (1, 13, T) MFCC maps."""
    return CifarResNet(depth, num_classes=10, in_channels=1)


def speech_run(bits_list=(2, 3, 4), epochs: int = 12, qat_epochs: int = 6, frames: int = 32,
               seed: int = 0, lr: float = 0.05, qat_lr: float = 0.01, progress: bool = True,
               data=None, zero_codes=(False,)) -> dict:
    """Train the float speech model, then QAT each DenseShift width from it; accuracies in %."""
    (xtr, ytr), (xte, yte), info = data or speech_data(frames, seed)
    torch.manual_seed(seed)
    model = speech_model()
    train_loader = TensorBatches(xtr, ytr, 64, True, seed, shift=2)
    test_loader = TensorBatches(xte, yte, 256, False)
    start = time.perf_counter()
    train(model, train_loader, epochs, lr=lr, weight_decay=5e-4, progress=progress,
          desc="speech float")
    rows = [{"task": "speech", "model": "float", "bits": 32, "zero_code": False,
             "accuracy": evaluate(model, test_loader), "seconds": time.perf_counter() - start}]
    for bits, zero_code in [(b, z) for b in bits_list for z in zero_codes]:
        start = time.perf_counter()
        name = f"{'shift' if zero_code else 'denseshift'}{bits}"
        q = to_denseshift(model, bits=bits, zero_code=zero_code)
        recalibrate_bn(q, train_loader)
        projected = evaluate(q, test_loader)
        train(q, train_loader, qat_epochs, lr=qat_lr, weight_decay=0.0, progress=progress,
              desc=f"speech {name}")
        rows.append({"task": "speech", "model": name, "bits": bits,
                     "zero_code": zero_code, "accuracy_projected": projected,
                     "accuracy": evaluate(q, test_loader),
                     "seconds": time.perf_counter() - start})
    for r in rows:
        r["relative_to_float"] = r["accuracy"] / rows[0]["accuracy"]
    return {"data": info, "rows": rows}


def fmnist_data(train_samples: int, test_samples: int, seed: int = 0):
    from spr.data import fashion_mnist

    train_split = fashion_mnist("train").subset(train_samples, seed)
    test_split = fashion_mnist("test").subset(test_samples, seed)
    gen = torch.Generator().manual_seed(seed)
    return (train_split.loader(128, True, pad_to=32, augment=True, generator=gen),
            test_split.loader(500, False, pad_to=32))


@torch.no_grad()
def recalibrate_bn(model, loader, batches: int = 10) -> None:
    """Re-estimate BatchNorm running statistics with a few training batches (no gradient):
    the projected weights change each layer's output scale, which the old statistics miss."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    was = model.training
    model.train()
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        model(x)
    model.train(was)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1


def qat(model, bits, zero_code, plan, loader, test_loader, epochs, lr, progress, label) -> dict:
    start = time.perf_counter()
    q = to_denseshift(model, bits=bits, zero_code=zero_code, plan=plan)
    recalibrate_bn(q, loader)
    projected = evaluate(q, test_loader)
    train(q, loader, epochs, lr=lr, weight_decay=0.0, progress=progress, desc=label)
    layers = shift_layers(q)
    weights = sum(math.prod(m.weight_shape) for m in layers.values())
    avg = sum(m.bits * math.prod(m.weight_shape) for m in layers.values()) / weights
    return {"accuracy_projected": projected, "accuracy": evaluate(q, test_loader),
            "average_code_bits": avg, "seconds": time.perf_counter() - start,
            "widths": {n: m.bits for n, m in layers.items()}}


def fmnist_run(args, parts) -> dict:
    loader, test_loader = fmnist_data(args.train_samples, args.test_samples, args.seed)
    torch.manual_seed(args.seed)
    model = resnet20(num_classes=10, in_channels=1)
    start = time.perf_counter()
    train(model, loader, args.epochs, lr=args.lr, progress=True, desc="fmnist float")
    rows = [{"task": "fmnist", "model": "float", "bits": 32, "zero_code": False,
             "accuracy": evaluate(model, test_loader), "seconds": time.perf_counter() - start}]
    out = {"rows": rows}
    if "fmnist" in parts:
        jobs = [(b, z) for b in args.bits for z in (False, True)]
        for bits, zero_code in tqdm(jobs, desc="fmnist shift QAT"):
            name = f"{'shift' if zero_code else 'denseshift'}{bits}"
            rec = qat(model, bits, zero_code, None, loader, test_loader, args.qat_epochs,
                      args.qat_lr, True, f"fmnist {name}")
            rows.append({"task": "fmnist", "model": name, "bits": bits, "zero_code": zero_code,
                         **{k: v for k, v in rec.items() if k != "widths"}})
    if "mixed" in parts:
        names = default_shift_layers(model)
        uniform = sum(ShiftQuant(3).storage_bits(model.get_submodule(n).weight) for n in names)
        calib = next(iter(fmnist_data(min(512, args.train_samples), 10, args.seed + 1)[0]))[0]
        plan = allocate_bits(model, [ShiftQuant(2), ShiftQuant(3), ShiftQuant(4)],
                             TotalBits(uniform), calibration=calib, layers=names,
                             progress=False)
        out["plan"] = plan.to_dict()
        out["plan"]["uniform3_predicted_distortion"] = plan.distortion_of(["shift3"] * len(names))
        rec = qat(model, 3, False, plan, loader, test_loader, args.qat_epochs, args.qat_lr, True,
                  "fmnist mixed")
        rows.append({"task": "fmnist", "model": "denseshift-mixed(avg3)", "bits": "mixed",
                     "zero_code": False, "plan_average_bits": plan.average_bits,
                     "uniform3_average_bits": uniform / sum(
                         model.get_submodule(n).weight.numel() for n in names),
                     **rec})
    for r in rows:
        r["relative_to_float"] = r["accuracy"] / rows[0]["accuracy"]
    return out


def plot(payload: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, ("fmnist", "speech"), strict=True):
        rows = payload.get(task, {}).get("rows", [])
        if not rows:
            ax.set_visible(False)
            continue
        fl = rows[0]["accuracy"]
        for zero_code, marker, label in ((False, "o-", "DenseShift (zero-free)"),
                                         (True, "s--", "shift with zero code")):
            pts = [(r["bits"], r["accuracy"]) for r in rows
                   if isinstance(r["bits"], int) and r["bits"] < 32 and r["zero_code"] == zero_code]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker, label=label)
        for r in rows:
            if r["bits"] == "mixed":
                ax.plot([r["average_code_bits"]], [r["accuracy"]], "r*", ms=12,
                        label="mixed 2/3/4 (solver, uniform-3 budget)")
        ax.axhline(fl, color="k", lw=1, label=f"float {fl:.1f}%")
        ax.set(xlabel="bits per weight", ylabel="held-out accuracy (%)", xticks=[2, 3, 4],
               title={"fmnist": "ResNet-20, Fashion-MNIST (CPU-reduced)",
                      "speech": "ResNet-8, FSDD MFCC digits"}[task])
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def table(payload: dict) -> str:
    lines = ["| task | model | bits | zero code | acc. projected + BN recal. (%) | "
             "acc. after QAT (%) | rel. to float |", "|---|---|---|---|---|---|---|"]
    for task in ("fmnist", "speech"):
        for r in payload.get(task, {}).get("rows", []):
            proj = r.get("accuracy_projected")
            lines.append(f"| {task} | {r['model']} | {r['bits']} | {r['zero_code']} | "
                         f"{'' if proj is None else f'{proj:.2f}'} | {r['accuracy']:.2f} | "
                         f"{r['relative_to_float']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["fmnist", "mixed", "speech"],
                        choices=["fmnist", "mixed", "speech"])
    parser.add_argument("--epochs", type=int, default=10, help="float epochs (Fashion-MNIST)")
    parser.add_argument("--qat-epochs", type=int, default=3, help="QAT epochs (Fashion-MNIST)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--qat-lr", type=float, default=0.01)
    parser.add_argument("--train-samples", type=int, default=6000)
    parser.add_argument("--test-samples", type=int, default=2000)
    parser.add_argument("--speech-epochs", type=int, default=15)
    parser.add_argument("--speech-qat-epochs", type=int, default=6)
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--toy", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.toy:
        args.epochs = args.qat_epochs = 1
        args.train_samples, args.test_samples = 64, 50
        args.speech_epochs, args.speech_qat_epochs = 1, 1
        args.bits = [3]
    tag = "cpu-toy" if args.toy else "cpu"
    payload = {"device": "cpu", "cpu_reduced": True, "toy": args.toy, "threads": args.threads,
               "platform": platform.platform(), "torch": torch.__version__,
               "settings": {k: str(v) if isinstance(v, Path) else v
                            for k, v in vars(args).items()}}
    if {"fmnist", "mixed"} & set(args.parts):
        payload["fmnist"] = fmnist_run(args, args.parts)
        payload["fmnist"]["data"] = {"train": args.train_samples, "test": args.test_samples,
                                     "epochs_float": args.epochs, "epochs_qat": args.qat_epochs}
    if "speech" in args.parts:
        if not FSDD.exists():
            print(f"skipping speech: {FSDD} not found (make data)")
        else:
            data = speech_data(args.frames, args.seed)
            if args.toy:
                data = ((data[0][0][:128], data[0][1][:128]), (data[1][0][:100],
                                                                data[1][1][:100]), data[2])
            payload["speech"] = speech_run(args.bits, args.speech_epochs, args.speech_qat_epochs,
                                           args.frames, args.seed, data=data,
                                           zero_codes=(False, True))
            payload["speech"]["epochs_float"] = args.speech_epochs
            payload["speech"]["epochs_qat"] = args.speech_qat_epochs
    print(table(payload))
    write_json(args.out / f"denseshift_{tag}.json", payload)
    plot(payload, args.out / f"denseshift_{tag}.png")
    return payload


if __name__ == "__main__":
    main()
