"""Physically smaller Llama-style models: per-layer MLP widths as data, weights as safetensors.

A model pruned by :func:`compress_extras.llm.prune_llm` stays a transformers model of its own
class (``LlamaForCausalLM`` for SmolLM2); only the MLP Linear layers of each decoder layer are
narrower. transformers' ``LlamaMLP`` computes ``down_proj(act(gate_proj(x)) * up_proj(x))`` and
reads every shape from its modules (``config.intermediate_size`` is used only to build them), so
replacing ``gate_proj``/``up_proj`` by ``Linear(hidden, k)`` and ``down_proj`` by
``Linear(k, hidden)`` gives layer i a width ``k_i`` with nothing else changed (checked by the
tests: the smaller model computes what the masked dense model does, to float tolerance). A plan
with bias compensation (the FLAP-style baseline) gives ``down_proj`` a bias, which the class
allows as well (``nn.Linear(k, hidden, bias=True)``).

Folder layout, written atomically (:func:`spr._atomic.atomic_dir`: the folder appears complete or
not at all)::

    pruned.json          {"format": "spr-pruned-llm", "version": 1, "config": {...},
                          "mlp_widths": [k_0, ..., k_L-1], "down_proj_bias": [layers with one],
                          "dtype": "float32"}
    model.safetensors    the state dict (a tied lm_head left out: it is the embedding)

:func:`load_pruned` builds the model from the config (``AutoModelForCausalLM.from_config``),
resizes each layer's MLP to the saved widths and loads the weights (strictly: every tensor must
match). For example::

    small = plan.apply(model)
    save_pruned(small, "runs/smollm2-20")
    again = load_pruned("runs/smollm2-20")       # same outputs as small
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from spr._atomic import atomic_dir, new_file_mode

__all__ = ["load_pruned", "mlp_parameters", "mlp_widths", "resize_mlp", "save_pruned",
           "shrink_mlp"]

FORMAT, VERSION = "spr-pruned-llm", 1
META, WEIGHTS = "pruned.json", "model.safetensors"


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Llama-style causal LM (``model.model.layers``) or of its base
    model (``model.layers``); ValueError for anything else."""
    for path in ("model.layers", "layers"):
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList) and len(layers) and all(
                isinstance(getattr(getattr(layer, "mlp", None), name, None), nn.Linear)
                for layer in layers for name in ("gate_proj", "up_proj", "down_proj")):
            return layers
    raise ValueError(f"{type(model).__name__} is not a Llama-style model: need model.layers[i].mlp "
                     "with gate_proj, up_proj and down_proj Linear layers")


def mlp_widths(model: nn.Module) -> list[int]:
    """The MLP width (``gate_proj.out_features``) of every decoder layer."""
    return [layer.mlp.gate_proj.out_features for layer in decoder_layers(model)]


def _linear(old: nn.Linear, in_features: int, out_features: int, bias: bool) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=bias, device=old.weight.device,
                     dtype=old.weight.dtype)


@torch.no_grad()
def resize_mlp(model: nn.Module, widths: Iterable[int], bias: Iterable[int] = ()) -> nn.Module:
    """Give decoder layer i an MLP of width ``widths[i]`` (new, uninitialised Linear layers where
    the width changes) and ``down_proj`` a bias in the layers listed in ``bias``; in place,
    returns ``model``. The weights are to be loaded afterwards (:func:`load_pruned`)."""
    layers = decoder_layers(model)
    widths = [int(k) for k in widths]
    bias = {int(i) for i in bias}
    if len(widths) != len(layers) or min(widths) < 1:
        raise ValueError(f"need one width >= 1 per decoder layer ({len(layers)}); got {widths}")
    for i, (layer, k) in enumerate(zip(layers, widths, strict=True)):
        mlp = layer.mlp
        hidden = mlp.gate_proj.in_features
        if mlp.gate_proj.out_features != k:
            mlp.gate_proj = _linear(mlp.gate_proj, hidden, k, mlp.gate_proj.bias is not None)
            mlp.up_proj = _linear(mlp.up_proj, hidden, k, mlp.up_proj.bias is not None)
        want_bias = i in bias or mlp.down_proj.bias is not None
        if mlp.down_proj.in_features != k or (mlp.down_proj.bias is not None) != want_bias:
            mlp.down_proj = _linear(mlp.down_proj, k, mlp.down_proj.out_features, want_bias)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = k
    return model


@torch.no_grad()
def shrink_mlp(model: nn.Module, keep: Mapping[int, Tensor]) -> nn.Module:
    """Remove, in place, the MLP neurons not in ``keep`` (layer index -> (width,) bool): the rows
    of ``gate_proj``/``up_proj`` and the columns of ``down_proj``. The model should already be the
    masked one (dropped neurons contribute nothing), so the result computes the same function.
    Returns ``model``."""
    layers = decoder_layers(model)
    for i, mask in keep.items():
        mlp = layers[int(i)].mlp
        mask = torch.as_tensor(mask, dtype=torch.bool, device=mlp.gate_proj.weight.device)
        width = mlp.gate_proj.out_features
        if mask.shape != (width,) or not mask.any():
            raise ValueError(f"keep[{i}] must be a ({width},) bool mask with a True; got "
                             f"{tuple(mask.shape)}")
        k = int(mask.sum())
        new = {}
        for name in ("gate_proj", "up_proj"):
            old = getattr(mlp, name)
            lin = _linear(old, old.in_features, k, old.bias is not None)
            lin.weight.copy_(old.weight[mask])
            if old.bias is not None:
                lin.bias.copy_(old.bias[mask])
            new[name] = lin
        old = mlp.down_proj
        lin = _linear(old, k, old.out_features, old.bias is not None)
        lin.weight.copy_(old.weight[:, mask])
        if old.bias is not None:
            lin.bias.copy_(old.bias)
        new["down_proj"] = lin
        for name, lin in new.items():
            setattr(mlp, name, lin)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = k
    return model


def _config_dict(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ValueError(f"{type(model).__name__} has no transformers config to save")
    data = config.to_dict()
    # a GGUF checkpoint's quantization entry describes the file it was read from, not this model
    data.pop("quantization_config", None)
    return data


def _tied(model: nn.Module) -> bool:
    head = getattr(model, "lm_head", None)
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return head is not None and embed is not None and head.weight is embed.weight


def save_pruned(model: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a Llama-style causal LM with any MLP widths) to ``folder`` atomically
    (module docstring); returns the folder as a Path."""
    import safetensors.torch

    layers = decoder_layers(model)
    tied = _tied(model)
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()
               if not (tied and name == "lm_head.weight")}
    dtype = next(model.parameters()).dtype
    meta = {"format": FORMAT, "version": VERSION, "config": _config_dict(model),
            "mlp_widths": mlp_widths(model),
            "down_proj_bias": [i for i, layer in enumerate(layers)
                               if layer.mlp.down_proj.bias is not None],
            "tied_lm_head": tied, "dtype": str(dtype).removeprefix("torch.")}
    target = Path(folder)
    with atomic_dir(target) as tmp:
        (tmp / META).write_text(json.dumps(meta, indent=2))
        safetensors.torch.save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        try:  # save_file makes it private (0o600); give it the JSON's usual permissions
            os.chmod(tmp / WEIGHTS, new_file_mode(tmp))
        except OSError:
            pass
    return target


def load_pruned(folder: str | os.PathLike[str], dtype: torch.dtype | None = None) -> nn.Module:
    """The model :func:`save_pruned` wrote to ``folder``, in eval mode (module docstring).
    ``dtype``: convert to it (default: the saved dtype)."""
    import safetensors.torch

    from compress_extras.llm._models import _transformers

    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder} holds no readable {META}: {error}") from error
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{folder / META} is not a {FORMAT} version {VERSION} file")
    tf = _transformers()
    config_data = dict(meta["config"])
    model_type = config_data.pop("model_type")
    config = tf.AutoConfig.for_model(model_type, **config_data)
    saved = getattr(torch, meta["dtype"])
    model = tf.AutoModelForCausalLM.from_config(config, dtype=saved)
    resize_mlp(model, meta["mlp_widths"], meta["down_proj_bias"])
    state = safetensors.torch.load_file(str(folder / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = {"lm_head.weight"} if meta.get("tied_lm_head") else set()
    if unexpected or set(missing) - allowed:
        raise ValueError(f"{folder / WEIGHTS} does not fit the saved widths: missing "
                         f"{sorted(set(missing) - allowed)}, unexpected {sorted(unexpected)}")
    if meta.get("tied_lm_head"):
        model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def mlp_parameters(model: nn.Module, layers: Iterable[int] | None = None) -> int:
    """The parameters of the MLPs (``gate_proj``, ``up_proj``, ``down_proj``, biases included)
    of the given decoder layers (all by default)."""
    all_layers = decoder_layers(model)
    indices = range(len(all_layers)) if layers is None else layers
    return sum(p.numel() for i in indices for p in all_layers[i].mlp.parameters())
