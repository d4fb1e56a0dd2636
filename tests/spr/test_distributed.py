"""The pipeline under DistributedDataParallel: a 2-process CPU (gloo) run of the whole protocol."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import spr
from spr import PruneConfig, run_pipeline
from spr.models import small_cnn

CONFIG = PruneConfig(
    arch="small_cnn", dataset="digits", epochs_reference=1, epochs_spr=1, epochs_finetune=1,
    lam=1.0, lr=0.05, batch_size=64, augment=True, max_drop=2.0, threshold_samples=300,
    threshold_tol=0.02,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        summary = run_pipeline(CONFIG, folder, progress=False, log=lambda m: None)
        out[rank] = (summary["params_pruned"], summary["threshold"]["threshold"])
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_run_agrees_and_rank_0_writes(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), out), nprocs=2, join=True)
        results = dict(out)
    assert results[0] == results[1]  # the same decision and the same network on both ranks
    pruned = spr.load_pruned(tmp_path / "pruned", small_cnn(10, 1))
    assert spr.count_params(pruned) == results[0][0]
    assert not list(tmp_path.glob(".*tmp*"))  # no leftovers of the atomic writes
