"""Save and load pruned models: the architecture as JSON data, the weights as safetensors.

A pruned model is its dense model (built by the ordinary constructor) with narrower layers:
Conv/Linear/BatchNorm modules with smaller ``in_channels``, ``out_features``, ``num_features``
... and parameters and buffers of the matching shapes. :func:`save_pruned` writes a directory

    architecture.json   format tag, model class, every module's type and width attributes,
                        every state-dict tensor's shape, the sha256 of model.safetensors and
                        the sha256 of its own content (``architecture_sha256``)
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

from spr._atomic import atomic_dir, fsync_path, new_file_mode
from spr._version import __version__
from spr.models import PadShortcut

__all__ = ["FORMAT", "WIDTH_ATTRS", "load_pruned", "save_pruned"]

#: The format save_pruned writes. ``/2`` added ``architecture_sha256``, a checksum of the JSON's
#: own content, so that an edited width is refused before anything is built; ``/1`` saves (no
#: checksum) are still read, their widths checked against the weights' shapes instead.
FORMAT = "spr.pruned/2"
FORMAT_1 = "spr.pruned/1"
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


def _content_sha256(architecture: dict[str, Any]) -> str:
    """sha256 of the architecture's entries other than ``architecture_sha256`` itself, in a
    canonical form (sorted keys, no whitespace): re-indenting the file does not change it."""
    content = {k: v for k, v in architecture.items() if k != "architecture_sha256"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


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

    Writes ``architecture.json`` (human-readable: the format tag ``"spr.pruned/2"``, the model
    class, every module's type and its :data:`WIDTH_ATTRS`, every state-dict tensor's shape, the
    sha256 of the weights, the spr version, and the sha256 of these entries) and
    ``model.safetensors`` (the state dict, each tensor copied to a contiguous CPU tensor; tied
    tensors are stored once per key). The folder and both files get the usual permissions
    (``0o777`` and ``0o666`` less the umask).

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
        try:  # save_file makes it private (0o600); give it the JSON's usual permissions
            os.chmod(tmp / WEIGHTS, new_file_mode(tmp))
        except OSError:  # a file system without POSIX permissions: nothing to fix
            pass
        fsync_path(tmp / WEIGHTS)
        architecture = {
            "format": FORMAT,
            "model_class": _class_name(model),
            "modules": modules,
            "tensors": {key: list(t.shape) for key, t in tensors.items()},
            "safetensors_sha256": _sha256(tmp / WEIGHTS),
            "spr_version": __version__,
        }
        architecture["architecture_sha256"] = _content_sha256(architecture)
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
    if not isinstance(architecture, dict) or architecture.get("format") not in (FORMAT, FORMAT_1):
        found = architecture.get("format") if isinstance(architecture, dict) else None
        raise ValueError(
            f"{json_path} is not a pruned-model save this spr reads (format tag: {found!r}; "
            f"known: {FORMAT_1!r}, {FORMAT!r})"
        )
    required: tuple[tuple[str, type], ...] = (
        ("model_class", str),
        ("modules", dict),
        ("tensors", dict),
        ("safetensors_sha256", str),
    )
    if architecture["format"] == FORMAT:
        required += (("architecture_sha256", str),)
    for key, kind in required:
        if not isinstance(architecture.get(key), kind):
            raise ValueError(f"{json_path} lacks {key!r} or it is not a {kind.__name__}")
    if architecture["format"] == FORMAT:
        recorded, content = architecture["architecture_sha256"], _content_sha256(architecture)
        if recorded != content:
            raise ValueError(
                f"{json_path} was changed after it was saved: its entries no longer match the "
                f"architecture_sha256 it records (recorded {recorded[:12]}..., content "
                f"{content[:12]}...), so its widths cannot be trusted; restore the file from the "
                "save or save the model again"
            )
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


def _width_constraints(
    module: nn.Module, w: dict[str, Any]
) -> tuple[list[tuple[str, int | None, Any, str]], list[str]]:
    """What the widths ``w`` of ``module`` say about its tensors' shapes, for the layers whose
    parameters' shapes follow from their widths: ``(tensor, dim, size, the widths saying so)``
    (dim None: the whole shape), and the widths that contradict each other."""
    out: list[tuple[str, int | None, Any, str]] = []
    problems: list[str] = []
    if isinstance(module, nn.modules.conv._ConvNd):
        cin, cout, groups = w["in_channels"], w["out_channels"], w["groups"]
        if groups < 1 or cin % groups or cout % groups:
            problems.append(f"in_channels={cin} and out_channels={cout} with groups={groups}")
            return out, problems
        rows, cols = (cin, cout) if module.transposed else (cout, cin)
        row_attr, col_attr = ("in", "out") if module.transposed else ("out", "in")
        out += [
            ("weight", 0, rows, f"{row_attr}_channels={rows}"),
            ("weight", 1, cols // groups, f"{col_attr}_channels={cols}, groups={groups}"),
            ("bias", 0, cout, f"out_channels={cout}"),
        ]
    elif isinstance(module, nn.Linear):
        cin, cout = w["in_features"], w["out_features"]
        out += [
            ("weight", None, [cout, cin], f"in_features={cin}, out_features={cout}"),
            ("bias", None, [cout], f"out_features={cout}"),
        ]
    elif isinstance(module, nn.modules.batchnorm._NormBase):  # batch and instance norms
        n = w["num_features"]
        for name in ("weight", "bias", "running_mean", "running_var"):
            out.append((name, None, [n], f"num_features={n}"))
    elif isinstance(module, nn.GroupNorm):
        channels, n_groups = w["num_channels"], w["num_groups"]
        if n_groups < 1 or channels % n_groups:
            problems.append(f"num_channels={channels} with num_groups={n_groups}")
        out += [(name, None, [channels], f"num_channels={channels}") for name in ("weight", "bias")]
    elif isinstance(module, nn.LayerNorm):
        shape = list(w["normalized_shape"])
        out += [(name, None, shape, f"normalized_shape={shape}") for name in ("weight", "bias")]
    elif isinstance(module, nn.Embedding):
        n, dim = w["num_embeddings"], w["embedding_dim"]
        out.append(("weight", None, [n, dim], f"num_embeddings={n}, embedding_dim={dim}"))
    elif isinstance(module, nn.MultiheadAttention):
        e, kdim, vdim = w["embed_dim"], w["kdim"], w["vdim"]
        if w["num_heads"] * w["head_dim"] != e:
            problems.append(
                f"embed_dim={e} with num_heads={w['num_heads']}, head_dim={w['head_dim']}"
            )
        out += [
            ("in_proj_weight", None, [3 * e, e], f"embed_dim={e}"),
            ("in_proj_bias", None, [3 * e], f"embed_dim={e}"),
            ("q_proj_weight", None, [e, e], f"embed_dim={e}"),
            ("k_proj_weight", None, [e, kdim], f"embed_dim={e}, kdim={kdim}"),
            ("v_proj_weight", None, [e, vdim], f"embed_dim={e}, vdim={vdim}"),
            ("bias_k", None, [1, 1, e], f"embed_dim={e}"),
            ("bias_v", None, [1, 1, e], f"embed_dim={e}"),
        ]
    elif isinstance(module, PadShortcut):
        out.append(("source", None, [w["out_channels"]], f"out_channels={w['out_channels']}"))
    return out, problems


def _check_widths_against_shapes(
    architecture: dict[str, Any],
    shapes: dict[str, list[int]],
    base_model: nn.Module,
    json_path: Path,
) -> None:
    """For saves without a checksum of architecture.json (``spr.pruned/1``): the widths it gives
    the common layers must agree with the shapes of their weights, or an edited width would
    build a layer whose attributes contradict its tensors (found only later, e.g. by
    remove_pruned)."""
    base_modules = dict(base_model.named_modules(remove_duplicate=False))
    problems = []
    for name, entry in architecture["modules"].items():
        module = base_modules[name]
        widths = {**_widths(module), **{k: v for k, v in entry.items() if k != "type"}}
        try:
            constraints, contradictions = _width_constraints(module, widths)
        except KeyError as e:  # a width the layer has was neither saved nor on base_model
            problems.append(f"module {name!r} ({entry['type']}) lacks the width {e}")
            continue
        except TypeError:  # a list where a number belongs, or the reverse
            problems.append(f"module {name!r} ({entry['type']}) has widths of the wrong kind")
            continue
        problems += [f"module {name!r} ({entry['type']}) has {c}" for c in contradictions]
        for tensor, dim, size, why in constraints:
            key = f"{name}.{tensor}" if name else tensor
            if key not in shapes:  # an absent bias, running stats not tracked, ...
                continue
            shape = shapes[key]
            actual = shape if dim is None else (shape[dim] if dim < len(shape) else None)
            if actual != size:
                problems.append(
                    f"module {name!r} ({entry['type']}) has {why} but {key} has shape {shape}"
                )
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ValueError(
            f"{json_path}: its widths do not match the weights' shapes in {WEIGHTS} (was the "
            f"file edited?): {'; '.join(problems[:5])}{more}"
        )


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
    was: the files exist (``FileNotFoundError``), the JSON has the ``"spr.pruned/2"`` tag and
    its content matches the ``architecture_sha256`` it records (an edited width is refused), the
    sha256 of model.safetensors matches it, the safetensors file parses, the model class, module
    names and types and state-dict keys agree with ``base_model`` (``ValueError``). Saves of the
    older format ``"spr.pruned/1"``, which has no checksum of the JSON, still load: their widths
    of convolutions, linear layers, norms, embeddings and multi-head attention are checked
    against the shapes of the weights instead. Only JSON and safetensors are read (no
    ``torch.load``, no pickle), so untrusted files cannot run code.

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
    if architecture["format"] == FORMAT_1:  # no checksum of the JSON: check what it says
        _check_widths_against_shapes(architecture, shapes, base_model, json_path)
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
