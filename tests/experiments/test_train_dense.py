"""experiments/train_dense.py at toy size: ResNet-20 on 256 Fashion-MNIST images for one epoch;
the saved safetensors loads back into the model with identical outputs, the JSON says what ran,
and a fixed seed gives the same weights twice."""

import importlib
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_dense():
    from spr.data import DatasetNotFoundError, fashion_mnist

    try:
        fashion_mnist("test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed: run `make data`")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "experiments"))  # the script imports its sibling _common
        module = importlib.import_module("train_dense")
    return module


def test_tiny_run_saves_weights_that_load_back(train_dense, tmp_path):
    threads = torch.get_num_threads()
    try:
        kw = dict(batch_size=64, seed=3, threads=1, train_samples=256, test_samples=256,
                  progress=False)
        net, payload = train_dense.train_dense("resnet20", 1, out=tmp_path / "a", **kw)
        again, _ = train_dense.train_dense("resnet20", 1, out=tmp_path / "b", **kw)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path / "a" / "resnet20_fashion_mnist.safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta == json.loads(json.dumps(payload))
    assert meta["model"] == "resnet20" and meta["shortcut"] == "A"
    assert meta["input"]["image_size"] == 28 and meta["input"]["pad_to"] == 32
    assert meta["train_samples"] == 256 and meta["train_subset"] is True
    assert meta["epochs"] == meta["epochs_completed"] == 1 and meta["seed"] == 3
    assert 0 <= meta["test_accuracy"] <= 100 and meta["torch"] == torch.__version__
    assert {"processor", "cpu_count", "loadavg"} <= set(meta["machine"])

    loaded = train_dense.load_dense(path)  # model name from the file's metadata
    state = net.state_dict()
    saved = safetensors.torch.load_file(str(path))
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # deterministic for a fixed seed: the second run saved the same tensors
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())
