"""Save and load pruned models: the architecture as JSON data, the weights as safetensors.

A pruned model is its dense model (built by the ordinary constructor) with narrower layers:
Conv/Linear/BatchNorm modules with smaller ``in_channels``, ``out_features``, ``num_features``
... and parameters and buffers of the matching shapes. :func:`save_pruned` writes a directory

    architecture.json   format tag, model class, every module's type and width attributes,
                        every state-dict tensor's shape, the sha256 of model.safetensors
    model.safetensors   the state dict

and :func:`load_pruned` rebuilds the pruned model from a freshly constructed dense one. Nothing
is pickled and nothing is imported from the files: loading reads JSON and safetensors only, so
a malicious save cannot run code.

>>> import tempfile
>>> from torch import nn
>>> pruned = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2))  # hidden 3 -> 2
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = save_pruned(pruned, f"{tmp}/pruned")
...     model = load_pruned(f"{tmp}/pruned", nn.Sequential(nn.Linear(4, 3), nn.ReLU(),
...                                                         nn.Linear(3, 2)))
>>> model[0].out_features, model[2].weight.shape
(2, torch.Size([2, 2]))
>>> torch.equal(model[2].weight, pruned[2].weight)
True
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from spr._atomic import atomic_dir, fsync_path

__all__ = ["FORMAT", "WIDTH_ATTRS", "load_pruned", "save_pruned"]

FORMAT = "spr.pruned/1"
ARCHITECTURE = "architecture.json"
WEIGHTS = "model.safetensors"

#: Module attributes that pruning may change, recorded by save_pruned and restored by
#: load_pruned wherever a module has them as an int (or, like ``normalized_shape``, a tuple of
#: ints): convolutions, linear layers, norms, embeddings and multi-head attention.
WIDTH_ATTRS = (
    "in_channels",
    "out_channels",
    "in_features",
    "out_features",
    "num_features",
    "groups",
    "num_groups",
    "num_channels",
    "normalized_shape",
    "num_embeddings",
    "embedding_dim",
    "embed_dim",
    "kdim",
    "vdim",
    "num_heads",
    "head_dim",
)


def _widths(module: nn.Module) -> dict[str, int | list[int]]:
    widths: dict[str, int | list[int]] = {}
    for attr in WIDTH_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            widths[attr] = value
        elif (
            isinstance(value, tuple)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            widths[attr] = list(value)
    return widths


def _class_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _state_tensors(model: nn.Module) -> dict[str, Tensor]:
    tensors = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, Tensor):
            raise TypeError(
                f"state-dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                "save_pruned stores tensors only"
            )
        # A private contiguous CPU copy of every entry: safetensors refuses tensors that share
        # storage, so tied parameters are stored once per state-dict key (load_pruned keeps the
        # base model's ties, copying the same values into the shared tensor).
        tensors[key] = value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return tensors


def save_pruned(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save a (pruned) model to the directory ``path``, atomically; returns ``path`` as a Path.

    Writes ``architecture.json`` (human-readable: the format tag ``"spr.pruned/1"``, the model
    class, every module's type and its :data:`WIDTH_ATTRS`, every state-dict tensor's shape, the
    sha256 of the weights, the spr version) and ``model.safetensors`` (the state dict, each
    tensor copied to a contiguous CPU tensor; tied tensors are stored once per key).

    Both files are written into a temporary directory next to ``path`` and then moved into place:
    an existing save at ``path`` is renamed aside, the new directory renamed in, and only then
    the old one deleted. An interrupted save therefore never leaves a half-written or mixed pair,
    and an earlier save is kept until the new one is complete (after a crash between the two
    renames it survives as ``.<name>.old-*`` next to ``path``). ``path`` may not be an existing
    directory holding files other than a previous save's two.

    >>> import tempfile
    >>> from torch import nn
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     sorted(p.name for p in save_pruned(nn.Linear(3, 2), f"{tmp}/m").iterdir())
    ['architecture.json', 'model.safetensors']
    """
    import spr  # late: spr/__init__ imports this module

    target = Path(path).absolute()
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a directory")
        others = sorted(p.name for p in target.iterdir() if p.name not in (ARCHITECTURE, WEIGHTS))
        if others:
            raise FileExistsError(
                f"{target} holds files other than a pruned-model save ({', '.join(others[:5])}); "
                "refusing to replace it"
            )
    tensors = _state_tensors(model)  # before touching the filesystem: may raise
    modules = {
        name: {"type": type(module).__name__, **_widths(module)}
        for name, module in model.named_modules(remove_duplicate=False)
    }
    with atomic_dir(target) as tmp:
        safetensors.torch.save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        fsync_path(tmp / WEIGHTS)
        architecture = {
            "format": FORMAT,
            "model_class": _class_name(model),
            "modules": modules,
            "tensors": {key: list(t.shape) for key, t in tensors.items()},
            "safetensors_sha256": _sha256(tmp / WEIGHTS),
            "spr_version": spr.__version__,
        }
        with open(tmp / ARCHITECTURE, "w", encoding="utf-8") as f:
            json.dump(architecture, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _mismatch(what: str, saved: set[str], base: set[str]) -> str | None:
    missing, extra = sorted(saved - base), sorted(base - saved)
    if not missing and not extra:
        return None
    parts = []
    for names, where in ((missing, "the checkpoint"), (extra, "base_model")):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            parts.append(f"{what} only in {where}: {', '.join(names[:5])}{more}")
    return "; ".join(parts)


def _read_architecture(json_path: Path) -> dict[str, Any]:
    try:
        architecture = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_path} is not valid JSON: {e}") from None
    if not isinstance(architecture, dict) or architecture.get("format") != FORMAT:
        found = architecture.get("format") if isinstance(architecture, dict) else None
        raise ValueError(f"{json_path} is not a {FORMAT!r} save (format tag: {found!r})")
    for key, kind in (
        ("model_class", str),
        ("modules", dict),
        ("tensors", dict),
        ("safetensors_sha256", str),
    ):
        if not isinstance(architecture.get(key), kind):
            raise ValueError(f"{json_path} lacks {key!r} or it is not a {kind.__name__}")
    return architecture


def _check_architecture(architecture: dict[str, Any], base_model: nn.Module) -> None:
    if architecture["model_class"] != _class_name(base_model):
        raise ValueError(
            f"checkpoint is for {architecture['model_class']}, "
            f"base_model is a {_class_name(base_model)}"
        )
    base_modules = dict(base_model.named_modules(remove_duplicate=False))
    saved_modules: dict[str, Any] = architecture["modules"]
    problems = [_mismatch("modules", set(saved_modules), set(base_modules))]
    wrong = []
    for name, entry in saved_modules.items():
        module = base_modules.get(name)
        if module is None:
            continue
        if not isinstance(entry, dict) or entry.get("type") != type(module).__name__:
            wrong.append(name)
            continue
        for attr, value in entry.items():
            if attr == "type":
                continue
            if attr not in WIDTH_ATTRS or attr not in _widths(module):
                wrong.append(f"{name}.{attr}")
            elif not (
                (isinstance(value, int) and not isinstance(value, bool))
                or (isinstance(value, list) and all(isinstance(v, int) for v in value))
            ):
                raise ValueError(f"module {name!r}: width {attr}={value!r} is not an integer")
    if wrong:
        problems.append(f"modules of another type or widths: {wrong[:5]}")
    problems.append(
        _mismatch("state-dict keys", set(architecture["tensors"]), set(base_model.state_dict()))
    )
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("checkpoint is from another architecture: " + "; ".join(problems))


def _tensor_slots(model: nn.Module) -> dict[str, tuple[nn.Module, str, bool]]:
    """state-dict key -> (owning module, attribute name, is a parameter)."""
    slots = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        stem = f"{prefix}." if prefix else ""
        for name, p in module._parameters.items():
            if p is not None:
                slots[stem + name] = (module, name, True)
        for name, b in module._buffers.items():
            if b is not None and name not in module._non_persistent_buffers_set:
                slots[stem + name] = (module, name, False)
    return slots


def load_pruned(path: str | os.PathLike, base_model: nn.Module) -> nn.Module:
    """Turn the freshly built dense ``base_model`` into the model saved at ``path``; returns it.

    ``base_model`` is modified in place and returned: pass a new instance of the saved model's
    class built with the same arguments, e.g. ``spr.models.resnet20(in_channels=1)``. Every
    module gets the saved :data:`WIDTH_ATTRS` and every parameter and buffer is replaced by a
    tensor of the saved shape (same dtype, device and ``requires_grad`` as before; parameters
    stay ``nn.Parameter``, tied ones stay tied), then the weights are loaded strictly.

    Everything is checked before ``base_model`` is touched, and on any error it is left as it
    was: the files exist (``FileNotFoundError``), the JSON has the ``"spr.pruned/1"`` tag, the
    sha256 of model.safetensors matches it, the safetensors file parses, the model class, module
    names and types and state-dict keys agree with ``base_model`` (``ValueError``). Only JSON and
    safetensors are read (no ``torch.load``, no pickle), so untrusted files cannot run code.

    >>> import tempfile
    >>> from torch import nn
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = save_pruned(nn.Linear(3, 2), f"{tmp}/m")
    ...     load_pruned(f"{tmp}/m", nn.Linear(3, 5)).weight.shape
    torch.Size([2, 3])
    """
    directory = Path(path)
    json_path, weights_path = directory / ARCHITECTURE, directory / WEIGHTS
    for file in (json_path, weights_path):
        if not file.is_file():
            raise FileNotFoundError(f"no pruned-model save at {directory}: {file.name} is missing")
    architecture = _read_architecture(json_path)
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != architecture["safetensors_sha256"]:
        raise ValueError(
            f"{weights_path}: model.safetensors does not match architecture.json "
            "(truncated or from another save)"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # SafetensorError and friends: report the file, not the parser
        raise ValueError(f"{weights_path} is not a readable safetensors file: {e}") from None
    del data
    _check_architecture(architecture, base_model)
    shapes = {key: list(t.shape) for key, t in tensors.items()}
    if shapes != architecture["tensors"]:
        differ = sorted(
            k
            for k in set(shapes) | set(architecture["tensors"])
            if shapes.get(k) != architecture["tensors"].get(k)
        )
        raise ValueError(
            f"{weights_path} does not match the tensor shapes in architecture.json: {differ[:5]}"
        )
    slots = _tensor_slots(base_model)
    if set(slots) != set(tensors):
        raise ValueError(
            "checkpoint is from another architecture: "
            + str(_mismatch("tensors", set(tensors), set(slots)))
        )

    base_modules = dict(base_model.named_modules(remove_duplicate=False))
    undo: list[tuple[Any, str, Any]] = []  # (object, attribute or dict key, old value)
    try:
        for name, entry in architecture["modules"].items():
            module = base_modules[name]
            for attr, value in entry.items():
                if attr != "type":
                    undo.append((module, attr, getattr(module, attr)))
                    setattr(module, attr, tuple(value) if isinstance(value, list) else value)
        replaced: dict[int, Tensor] = {}  # keeps tied parameters tied
        for key, (module, name, is_param) in slots.items():
            store = module._parameters if is_param else module._buffers
            old = store[name]
            new = replaced.get(id(old))
            if new is None:
                new = torch.empty(tensors[key].shape, dtype=old.dtype, device=old.device)
                if is_param:
                    new = nn.Parameter(new, requires_grad=old.requires_grad)
                replaced[id(old)] = new
            undo.append((store, name, old))
            store[name] = new
        base_model.load_state_dict(tensors, strict=True)
    except BaseException:
        for obj, attr, value in reversed(undo):
            if isinstance(obj, dict):
                obj[attr] = value
            else:
                setattr(obj, attr, value)
        raise
    return base_model
