"""The loader: the same batches from shards as from memory, whatever the workers and the place
of the augmentation; the same settings for both sources; reproducible; usable by the training
loop."""

import pytest
import torch

from spr.data import ImageLoader, digits, write_shards

CONFIGS = [
    dict(workers=0, augment_on="device"),
    dict(workers=0, augment_on="cpu"),
    dict(workers=2, worker_type="thread", augment_on="device"),
    dict(workers=2, worker_type="thread", augment_on="cpu"),
    dict(workers=2, worker_type="process", augment_on="cpu", prefetch=1),
]


@pytest.fixture(scope="module")
def split():
    return digits("train")  # 1400 x (1, 8, 8)


@pytest.fixture(scope="module")
def shards(split, tmp_path_factory):
    return write_shards(split, tmp_path_factory.mktemp("digits"), samples_per_shard=300)


def batches(loader, passes=2):
    return [(x.clone(), y.clone()) for _ in range(passes) for x, y in loader]


@pytest.fixture(scope="module")
def reference(split):
    """ImageSplit.loader's batches (in memory, float, augmented on the CPU), two passes."""
    g = torch.Generator().manual_seed(0)
    return batches(split.loader(batch_size=128, pad_to=12, augment=True, generator=g))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_same_batches_as_the_in_memory_loader(shards, reference, config):
    g = torch.Generator().manual_seed(0)
    loader = shards.loader(batch_size=128, pad_to=12, augment=True, generator=g, **config)
    got = batches(loader)
    assert len(loader) == 11 and len(got) == len(reference) == 22
    for (x, y), (xr, yr) in zip(got, reference, strict=True):
        assert x.dtype == torch.float32 and torch.equal(x, xr) and torch.equal(y, yr)


@pytest.mark.parametrize("config", CONFIGS[1:4], ids=lambda c: "-".join(map(str, c.values())))
def test_an_in_memory_split_with_workers_and_every_setting(split, reference, config):
    g = torch.Generator().manual_seed(0)
    loader = split.loader(128, True, 12, True, generator=g, device="cpu", **config)
    assert isinstance(loader, ImageLoader) and loader.device == split.device
    got = batches(loader)
    for (x, y), (xr, yr) in zip(got, reference, strict=True):
        assert torch.equal(x, xr) and torch.equal(y, yr)
    x, y = next(iter(split.loader(4, False, normalize=(0.5, 0.25), indices=[3, 1])))
    assert torch.equal(x, split.images[[3, 1]].float().div(255).sub(0.5).div(0.25))
    assert torch.equal(y, split.labels[[3, 1]])


def test_the_source_protocol(split, shards):
    idx = torch.tensor([1399, 0, 299, 300])
    for source in (split, shards):
        assert source.sample_shape == (1, 8, 8) and source.device == torch.device("cpu")
        assert torch.equal(source.gather(idx), split.images[idx])
        assert torch.equal(source.labels[idx], split.labels[idx])
    with pytest.raises(TypeError):
        split.loader(128, True, None, False, None)  # the settings after augment are keywords


def test_normalised_and_unshuffled(shards, split):
    mean, std = 0.3, 0.4
    loader = shards.loader(batch_size=500, shuffle=False, normalize=(mean, std), drop_last=True)
    got = list(loader)
    assert len(loader) == len(got) == 2
    x, y = got[1]
    want = split.images[500:1000].float().div_(255).sub_(mean).div_(std)
    assert torch.equal(x, want) and torch.equal(y, split.labels[500:1000])


def test_a_subset_of_indices(shards, split):
    idx = [5, 1399, 0, 700]
    x, y = next(iter(shards.loader(batch_size=8, shuffle=False, indices=idx)))
    assert torch.equal(x, split.images[idx].float() / 255) and torch.equal(y, split.labels[idx])
    loader = shards.loader(batch_size=3, indices=torch.arange(100, 110))
    assert len(loader) == 4 and sorted(torch.cat([y for _, y in loader]).tolist()) == sorted(
        split.labels[100:110].tolist()
    )
    with pytest.raises(ValueError, match="indices must lie in"):
        shards.loader(indices=[1400])


def test_reproducible_and_fresh_each_pass(shards):
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return batches(shards.loader(batch_size=256, augment=True, generator=g, workers=1))

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, xb) for (x, _), (xb, _) in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][1], a[6][1])  # pass 2 (batch 6 of 6+6) has a new order


def test_stopping_early_then_again(shards):
    loader = shards.loader(batch_size=64, workers=2, augment=True)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert sum(len(y) for _, y in loader) == 1400


def test_process_workers_verify_once_here(tmp_path, split):
    ds = write_shards(split, tmp_path, samples_per_shard=500)
    assert not any(ds._verified)
    loader = ds.loader(batch_size=700, workers=1, worker_type="process")
    assert sum(len(y) for _, y in loader) == 1400 and all(ds._verified)
    loader.close()
    assert sum(len(y) for _, y in loader) == 1400  # a new pool on the next pass


def test_a_training_step_on_its_batches(shards):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = shards.loader(batch_size=200, pad_to=12, normalize=(0.3, 0.4), augment=True)
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches(shards):
    kw = dict(batch_size=128, pad_to=12, augment=True, normalize=(0.3, 0.4))
    cpu = batches(shards.loader(generator=torch.Generator().manual_seed(0), **kw), 1)
    gpu = batches(shards.loader(generator=torch.Generator().manual_seed(0), device="cuda", **kw), 1)
    for (x, y), (xg, yg) in zip(cpu, gpu, strict=True):
        assert xg.is_cuda and yg.is_cuda
        assert torch.equal(x, xg.cpu()) and torch.equal(y, yg.cpu())


def test_bad_arguments(shards):
    with pytest.raises(ValueError, match="batch_size"):
        ImageLoader(shards, batch_size=0)
    with pytest.raises(ValueError, match="pad_to must be at least"):
        shards.loader(pad_to=6)
    with pytest.raises(ValueError, match="worker_type"):
        shards.loader(workers=1, worker_type="fiber")
    with pytest.raises(ValueError, match="augment_on"):
        shards.loader(augment_on="gpu")
    with pytest.raises(ValueError, match="normalize needs 1 or 1 values"):
        shards.loader(normalize=((0.1, 0.2), (1, 1)))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU torch.Generator"):
            shards.loader(generator=torch.Generator("cuda"))
        on_gpu = digits("test")
        on_gpu = type(on_gpu)(on_gpu.images.cuda(), on_gpu.labels.cuda(), on_gpu.classes, "g")
        with pytest.raises(ValueError, match="workers gather on the CPU"):
            on_gpu.loader(workers=1)
        x, y = next(iter(on_gpu.loader(8, pad_to=12, augment=True)))
        assert x.is_cuda and y.is_cuda and x.shape == (8, 1, 12, 12)
