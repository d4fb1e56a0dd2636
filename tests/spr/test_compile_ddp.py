"""SPRegularizer where users train: under torch.compile and under DistributedDataParallel."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import spr
from spr.models import resnet20
from tests.spr.test_regularizer import perturb_norms


@pytest.mark.slow
def test_compiled_equals_eager():
    torch.manual_seed(0)
    model = perturb_norms(resnet20(in_channels=1))
    reg = spr.SPRegularizer(model, lam=0.5, alpha=0.5, M_scale=2.0)
    params = list(model.parameters())
    eager = reg()
    eager_grads = torch.autograd.grad(eager, params, allow_unused=True)
    compiled = torch.compile(reg, fullgraph=True)
    value = compiled()
    grads = torch.autograd.grad(value, params, allow_unused=True)
    torch.testing.assert_close(value, eager)
    for g, e in zip(grads, eager_grads, strict=True):
        if e is not None:
            torch.testing.assert_close(g, e)


def test_wrappers_are_looked_through():
    model = resnet20()
    names = spr.SPRegularizer(model, 0.5, 0.5).block_names_
    for wrapped in (torch.compile(model), torch.nn.DataParallel(model)):
        assert spr.SPRegularizer(wrapped, 0.5, 0.5).block_names_ == names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make():
    torch.manual_seed(0)
    model = perturb_norms(resnet20(in_channels=1, num_classes=4)).double().eval()
    torch.manual_seed(1)
    x = torch.randn(8, 1, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    return model, x, y


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, x, y = _make()
    ddp = DistributedDataParallel(model)
    reg = spr.SPRegularizer(ddp, lam=0.5, alpha=0.5, M_scale=2.0)  # looks through the wrapper
    shard = slice(rank * 4, rank * 4 + 4)
    loss = F.cross_entropy(ddp(x[shard]), y[shard]) + reg()
    loss.backward()
    if rank == 0:
        out["grads"] = [p.grad.clone() for p in model.parameters()]
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gradients_equal_single_process():
    model, x, y = _make()
    reg = spr.SPRegularizer(model, lam=0.5, alpha=0.5, M_scale=2.0)
    (F.cross_entropy(model(x), y) + reg()).backward()
    want = [p.grad for p in model.parameters()]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        got = list(out["grads"])
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
