"""save_pruned / load_pruned: round trips of Torch-Pruning-pruned ResNets, atomic saves, checks."""

import copy
import hashlib
import json
import os

import pytest
import safetensors.torch
import torch
import torch_pruning as tp
from torch import nn
from torchvision.models import resnet18

from spr._serialize import _widths, load_pruned, save_pruned
from spr.models import resnet20, resnet56


def settle_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """A few train-mode passes so the running statistics are not the default 0 and 1."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x + torch.randn_like(x))
    model.eval()


def pruned_resnet20() -> nn.Module:
    torch.manual_seed(0)
    model = resnet20(in_channels=1, shortcut="B")
    x = torch.randn(4, 1, 32, 32)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    dg.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=[0, 3]).prune()
    dg.get_pruning_group(model.layer2[0].conv1, tp.prune_conv_out_channels, idxs=[1, 2, 5]).prune()
    dg.get_pruning_group(model.layer3[2].conv1, tp.prune_conv_out_channels, idxs=[7]).prune()
    settle_batchnorm(model, x)
    return model


def pruned_resnet18() -> nn.Module:
    torch.manual_seed(1)
    model = resnet18(weights=None, num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    dg.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=[0, 3]).prune()
    half = list(range(0, 256, 2))
    dg.get_pruning_group(model.layer3[1].conv1, tp.prune_conv_out_channels, idxs=half).prune()
    settle_batchnorm(model, x)
    return model


CASES = {
    "resnet20": (pruned_resnet20, lambda: resnet20(in_channels=1, shortcut="B"), (2, 1, 32, 32)),
    "resnet18": (pruned_resnet18, lambda: resnet18(weights=None, num_classes=10), (2, 3, 64, 64)),
}


@pytest.fixture(scope="module")
def resnet20_pruned() -> nn.Module:
    return pruned_resnet20()


def content_sha256(arch: dict) -> str:
    """The checksum of format /2, written out: sha256 of the other entries as canonical JSON."""
    rest = {k: v for k, v in arch.items() if k != "architecture_sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {name: _widths(m) for name, m in model.named_modules()},
        [id(p) for p in model.parameters()],
    )


def assert_untouched(model: nn.Module, snap) -> None:
    state, widths, ids = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[k], state[k]) for k in state)
    assert {name: _widths(m) for name, m in model.named_modules()} == widths
    assert [id(p) for p in model.parameters()] == ids


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_is_bit_identical(case, tmp_path):
    make_pruned, make_base, shape = CASES[case]
    pruned = make_pruned()
    base = make_base()
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in base.parameters())
    assert save_pruned(pruned, tmp_path / "save") == tmp_path / "save"
    loaded = load_pruned(tmp_path / "save", base)
    assert loaded is base  # modified in place and returned
    x = torch.randn(shape)
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    a, b = pruned.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    for (name, m), (_, n) in zip(pruned.named_modules(), loaded.named_modules(), strict=True):
        assert _widths(m) == _widths(n), name
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in loaded.parameters())
    # the loaded model trains: shapes of weights and widths agree
    loaded.train()
    loaded(x).sum().backward()


def test_json_is_readable_and_records_the_pruned_widths(resnet20_pruned, tmp_path):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    text = (path / "architecture.json").read_text()
    assert text.startswith('{\n  "format": "spr.pruned/2"')  # indented, one entry per line
    arch = json.loads(text)
    assert arch["model_class"] == "spr.models._cifar_resnet.CifarResNet"
    assert arch["modules"]["conv1"] == {
        "type": "Conv2d",
        "in_channels": 1,
        "out_channels": 14,
        "groups": 1,
    }
    assert arch["modules"]["layer2.0.conv1"]["out_channels"] == 29
    assert arch["modules"]["layer2.0.bn1"] == {"type": "BatchNorm2d", "num_features": 29}
    assert arch["modules"]["layer3.2.conv1"]["out_channels"] == 63
    assert arch["modules"]["layer3.2.conv2"]["in_channels"] == 63
    assert arch["modules"]["fc"]["in_features"] == 64  # block outputs were not pruned
    assert arch["tensors"]["conv1.weight"] == [14, 1, 3, 3]
    assert arch["tensors"]["bn1.num_batches_tracked"] == []
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert arch["safetensors_sha256"] == digest
    assert arch["architecture_sha256"] == content_sha256(arch)
    assert arch["spr_version"]
    assert sorted(os.listdir(tmp_path)) == ["p"]  # no temporary directories left


def test_saving_over_an_existing_save_replaces_it(resnet20_pruned, tmp_path):
    dense = resnet20(in_channels=1, shortcut="B").eval()
    save_pruned(dense, tmp_path / "p")
    save_pruned(resnet20_pruned, tmp_path / "p")
    loaded = load_pruned(tmp_path / "p", resnet20(in_channels=1, shortcut="B")).eval()
    assert loaded.conv1.out_channels == 14
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded(x), resnet20_pruned(x))
    assert sorted(os.listdir(tmp_path)) == ["p"]
    assert sorted(os.listdir(tmp_path / "p")) == ["architecture.json", "model.safetensors"]


def test_refuses_to_replace_a_directory_with_other_files(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        save_pruned(nn.Linear(2, 2), tmp_path / "p")
    assert (tmp_path / "p" / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_truncated_weights_raise_and_leave_base_model_untouched(resnet20_pruned, tmp_path):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    base = resnet20(in_channels=1, shortcut="B")
    snap = snapshot(base)
    with pytest.raises(ValueError, match="does not match architecture.json") as err:
        load_pruned(path, base)
    assert str(weights) in str(err.value)
    assert_untouched(base, snap)


def test_unparsable_weights_with_matching_digest(resnet20_pruned, tmp_path):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    arch = json.loads((path / "architecture.json").read_text())
    arch["safetensors_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    arch["architecture_sha256"] = content_sha256(arch)  # a consistent JSON: the parser speaks
    (path / "architecture.json").write_text(json.dumps(arch))
    base = resnet20(in_channels=1, shortcut="B")
    snap = snapshot(base)
    with pytest.raises(ValueError, match="not a readable safetensors file") as err:
        load_pruned(path, base)
    assert str(weights) in str(err.value)
    assert_untouched(base, snap)


def test_missing_files_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_pruned(tmp_path / "nowhere", nn.Linear(2, 2))
    path = save_pruned(nn.Linear(2, 2), tmp_path / "p")
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_pruned(path, nn.Linear(2, 2))
    path = save_pruned(nn.Linear(2, 2), tmp_path / "q")
    (path / "architecture.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pruned(path, nn.Linear(2, 2))
    (path / "architecture.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(ValueError, match="format tag: 'other/9'"):
        load_pruned(path, nn.Linear(2, 2))


def test_another_architecture_is_refused(resnet20_pruned, tmp_path):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    base = resnet56(in_channels=1, shortcut="B")
    snap = snapshot(base)
    with pytest.raises(ValueError, match="another architecture") as err:
        load_pruned(path, base)
    assert "layer1.3" in str(err.value)  # names some of the differing modules
    assert_untouched(base, snap)
    # same class and depth, other shortcut: different module names
    with pytest.raises(ValueError, match="another architecture.*shortcut"):
        load_pruned(path, resnet20(in_channels=1, shortcut="A"))


def test_another_class_is_refused(resnet20_pruned, tmp_path):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    base = resnet18(weights=None, num_classes=10)
    snap = snapshot(base)
    with pytest.raises(ValueError, match="checkpoint is for spr.models._cifar_resnet.CifarResNet"):
        load_pruned(path, base)
    assert_untouched(base, snap)


def test_a_module_of_another_type_is_refused(tmp_path):
    path = save_pruned(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), tmp_path / "p")
    with pytest.raises(ValueError, match="another architecture.*'1'"):
        load_pruned(path, nn.Sequential(nn.Linear(3, 4), nn.Tanh()))


def test_failure_while_loading_rolls_back(resnet20_pruned, tmp_path, monkeypatch):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    base = resnet20(in_channels=1, shortcut="B")
    snap = snapshot(base)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(base, "load_state_dict", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        load_pruned(path, base)
    assert base.conv1.out_channels == 16 and base.conv1.weight.shape == (16, 1, 3, 3)
    assert_untouched(base, snap)


@pytest.mark.parametrize("fail", ["save_file", "first_replace", "second_replace"])
def test_crash_during_save_keeps_the_previous_save(resnet20_pruned, tmp_path, monkeypatch, fail):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    before = {name: (path / name).read_bytes() for name in os.listdir(path)}
    if fail == "save_file":

        def crash(*args, **kwargs):
            raise OSError("no space left on device")

        monkeypatch.setattr(safetensors.torch, "save_file", crash)
    else:
        real_replace, calls = os.replace, []

        def crash(src, dst):
            calls.append((src, dst))
            if len(calls) == (1 if fail == "first_replace" else 2):
                raise OSError("no space left on device")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="no space"):
        save_pruned(resnet20(in_channels=1, shortcut="B"), tmp_path / "p")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["p"]  # no temporary or set-aside directories
    assert {name: (path / name).read_bytes() for name in os.listdir(path)} == before
    loaded = load_pruned(path, resnet20(in_channels=1, shortcut="B")).eval()
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded(x), resnet20_pruned(x))


class Tied(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.emb(tokens)))


def test_tied_parameters_stay_tied_and_flags_are_kept(tmp_path):
    torch.manual_seed(2)
    pruned = Tied(dim=5)
    base = Tied(dim=8)
    base.norm.bias.requires_grad_(False)
    load_pruned(save_pruned(pruned, tmp_path / "t"), base)
    assert base.head.weight is base.emb.weight and base.emb.weight.shape == (10, 5)
    assert base.emb.embedding_dim == 5 and base.head.in_features == 5
    assert base.norm.normalized_shape == (5,)
    assert not base.norm.bias.requires_grad and base.norm.weight.requires_grad
    tokens = torch.tensor([[1, 4, 9]])
    assert torch.equal(base(tokens), pruned(tokens))


def test_non_tensor_state_is_refused_before_writing(tmp_path):
    class WithExtra(nn.Linear):
        def get_extra_state(self):
            return {"note": 1}

        def set_extra_state(self, state):
            pass

    with pytest.raises(TypeError, match="_extra_state"):
        save_pruned(WithExtra(2, 2), tmp_path / "p")
    assert os.listdir(tmp_path) == []


def test_previous_save_survives_when_it_cannot_be_put_back(resnet20_pruned, tmp_path, monkeypatch):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    before = {name: (path / name).read_bytes() for name in os.listdir(path)}
    real_replace, calls = os.replace, []

    def crash(src, dst):  # moving the new save in fails, and so does moving the old one back
        calls.append((src, dst))
        if len(calls) >= 2:
            raise OSError("I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="I/O error"):
        save_pruned(resnet20(in_channels=1, shortcut="B"), tmp_path / "p")
    monkeypatch.undo()
    (aside,) = os.listdir(tmp_path)  # the new one is cleaned up, the old one set aside intact
    assert aside.startswith(".p.old-")
    assert {name: (tmp_path / aside / name).read_bytes() for name in before} == before


# ---- issue 18: an edited architecture.json, old saves, permissions ------------------------------


def _edit_json(path, change) -> None:
    arch = json.loads((path / "architecture.json").read_text())
    change(arch)
    (path / "architecture.json").write_text(json.dumps(arch, indent=2))


def _as_format_1(arch: dict) -> None:
    """What save_pruned wrote before the architecture checksum: tag /1, no architecture_sha256."""
    arch["format"] = "spr.pruned/1"
    arch.pop("architecture_sha256", None)


def _widen_conv1(arch):
    """The edit of the issue: one width in architecture.json changed from 16 to 18."""
    arch["modules"]["layer1.0.conv1"]["out_channels"] = 18


def test_a_width_edited_in_architecture_json_is_refused(resnet20_pruned, tmp_path):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    arch = json.loads((path / "architecture.json").read_text())
    assert arch["modules"]["layer1.0.conv1"]["out_channels"] == 16

    _edit_json(path, _widen_conv1)
    base = resnet20(in_channels=1, shortcut="B")
    snap = snapshot(base)
    with pytest.raises(ValueError, match="architecture.json was changed after it was saved") as err:
        load_pruned(path, base)
    assert str(path / "architecture.json") in str(err.value)
    assert_untouched(base, snap)
    # undone, and re-indented with the keys reordered: the same content, so it loads
    _edit_json(path, lambda arch: arch["modules"]["layer1.0.conv1"].update(out_channels=16))
    text = json.dumps(json.loads((path / "architecture.json").read_text()), sort_keys=True)
    (path / "architecture.json").write_text(text)
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(load_pruned(path, base).eval()(x), resnet20_pruned(x))


def test_old_format_1_saves_load_and_their_widths_are_checked_against_the_weights(
    resnet20_pruned, tmp_path
):
    path = save_pruned(resnet20_pruned, tmp_path / "p")
    _edit_json(path, _as_format_1)
    x = torch.randn(1, 1, 32, 32)
    loaded = load_pruned(path, resnet20(in_channels=1, shortcut="B")).eval()
    assert torch.equal(loaded(x), resnet20_pruned(x))

    _edit_json(path, _widen_conv1)
    base = resnet20(in_channels=1, shortcut="B")
    snap = snapshot(base)
    with pytest.raises(ValueError, match="do not match the weights") as err:
        load_pruned(path, base)
    message = str(err.value)
    assert str(path / "architecture.json") in message
    assert "'layer1.0.conv1'" in message and "out_channels=18" in message
    assert "[16, 14, 3, 3]" in message  # the weight as saved (its inputs pruned 16 -> 14)
    assert_untouched(base, snap)


@pytest.mark.parametrize(
    "module, key, attr, value",
    [
        (nn.Linear(4, 3), "", "in_features", 5),
        (nn.BatchNorm1d(3), "", "num_features", 4),
        (nn.LayerNorm(6), "", "normalized_shape", [7]),
        (nn.Embedding(10, 4), "", "embedding_dim", 3),
        (nn.GroupNorm(2, 4), "", "num_channels", 6),
        (nn.ConvTranspose2d(4, 6, 3), "", "out_channels", 8),
        (nn.Conv2d(4, 4, 3, groups=2), "", "groups", 4),
    ],
)
def test_format_1_cross_check_covers_the_common_layers(module, key, attr, value, tmp_path):
    path = save_pruned(module, tmp_path / "p")
    _edit_json(path, _as_format_1)
    load_pruned(path, copy.deepcopy(module))  # unedited: loads

    def edit(arch):
        arch["modules"][key][attr] = value

    _edit_json(path, edit)
    base = copy.deepcopy(module)
    snap = snapshot(base)
    with pytest.raises(ValueError, match="do not match the weights") as err:
        load_pruned(path, base)
    assert f"{attr}=" in str(err.value)
    assert_untouched(base, snap)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saves_get_ordinary_permissions(umask, tmp_path):
    old = os.umask(umask)
    try:
        for _ in range(2):  # a fresh save, then one replacing it
            path = save_pruned(nn.Linear(3, 2), tmp_path / "p")
            modes = {
                name: os.stat(p).st_mode & 0o777
                for name, p in [(".", path), *((q.name, q) for q in path.iterdir())]
            }
            assert modes == {
                ".": 0o777 & ~umask,
                "architecture.json": 0o666 & ~umask,
                "model.safetensors": 0o666 & ~umask,
            }
    finally:
        os.umask(old)


def test_format_1_widths_of_the_wrong_kind_are_refused(tmp_path):
    path = save_pruned(nn.Conv2d(4, 3, 1), tmp_path / "p")

    def edit(arch):
        _as_format_1(arch)
        arch["modules"][""]["in_channels"] = [4]

    _edit_json(path, edit)
    with pytest.raises(ValueError, match="'' \\(Conv2d\\) has widths of the wrong kind"):
        load_pruned(path, nn.Conv2d(4, 3, 1))
