"""A run folder checked before anything is written, and opened after (``spr prune``).

:func:`read_folder` refuses, with the file's name and the fix, a folder that holds another run, a
damaged or edited ``config.json``, a ``checkpoint/state.json`` whose stage disagrees with what the
folder holds, a truncated ``checkpoint/optimizer.pt`` and saved models that do not load;
:func:`open_folder` then creates the folder, applies ``restart`` and writes ``config.json``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spr._atomic import write_text_atomic
from spr._config import PruneConfig, json_error_detail
from spr._distributed import barrier, is_main
from spr._run import REFERENCE_FIELDS, STAGES, PipelineError, _Run
from spr._surgery import layer_widths

__all__ = ["open_folder", "read_folder"]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


_FIX = ("restore the file, or discard the checkpoint and start over in this folder with "
        "--restart (restart=True), which keeps a dense reference trained under the same settings")

# the prune stage's decision: a threshold run records "threshold", a budgeted run "budget"
_DECISION = ("threshold", "budget")
# records each stage's checkpoint must hold (have) and must not hold yet (not_yet); a tuple is
# one of its keys
_STAGE_RECORDS = {
    "reference": ((), ("accuracy_spr", _DECISION, "accuracy_pruned", "accuracy_finetuned",
                       "spr_history", "finetune_history")),
    "spr": (("accuracy_dense",), ("accuracy_spr", _DECISION, "accuracy_pruned",
                                  "accuracy_finetuned", "finetune_history")),
    "prune": (("accuracy_dense", "accuracy_spr"), (_DECISION, "accuracy_pruned",
                                                   "accuracy_finetuned", "finetune_history")),
    "finetune": (("accuracy_dense", "accuracy_spr", _DECISION, "accuracy_pruned"),
                 ("accuracy_finetuned",)),
    "done": (("accuracy_dense", "accuracy_spr", _DECISION, "accuracy_pruned",
              "accuracy_finetuned"), ()),
}


def _held(records: dict, key: str | tuple[str, ...]) -> bool:
    return any(k in records for k in ((key,) if isinstance(key, str) else key))


def _label(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else " or ".join(key)


# folders that exist once a stage has begun (the checkpoint of that stage)
_STAGE_FOLDERS = {"reference": (), "spr": ("dense",), "prune": ("dense", "spr"),
                  "finetune": ("dense", "spr"), "done": ("dense", "spr", "pruned")}


def _read_saved_config(out: Path, restart: bool) -> tuple[PruneConfig | None, bool]:
    """``(the folder's config or None, whether config.json is there but unreadable)``."""
    path = out / "config.json"
    if not path.exists():
        return None, False
    try:
        return PruneConfig.load(path), False
    except (ValueError, OSError) as err:
        if restart:
            return None, True
        raise PipelineError(
            f"{path} is damaged or was edited ({err}); it records the settings of the run in "
            f"{out}: restore it, start over there with --restart (restart=True; the dense "
            "reference is then retrained), or choose another output folder"
        ) from None


def _check_state(state: Any, out: Path, config: PruneConfig) -> dict:
    """``state.json``'s content if it agrees with the config and the folder, else PipelineError."""
    path = out / "checkpoint" / "state.json"

    def bad(problem: str) -> PipelineError:
        return PipelineError(f"{path}: {problem}; the checkpoint is damaged or was edited: "
                             f"{_FIX}")

    if not isinstance(state, dict):
        raise bad(f"expected a JSON object with stage, epoch and records; got a "
                  f"{type(state).__name__}")
    stage, epoch, records = state.get("stage"), state.get("epoch"), state.get("records")
    if stage not in STAGES:
        raise bad(f"unknown stage {stage!r}; the stages are {list(STAGES)}")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise bad(f"epoch must be an integer >= 0; got {epoch!r}")
    if not isinstance(records, dict):
        raise bad(f"records must be a JSON object; got {type(records).__name__}")
    seconds = state.get("seconds", 0.0)
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise bad(f"seconds must be a finite number >= 0; got {seconds!r}")
    threads = state.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise bad(f"threads must be an integer >= 1; got {threads!r}")
    epochs = {"reference": config.epochs_reference, "spr": config.epochs_spr,
              "finetune": config.epochs_finetune}.get(stage, 0)
    if epoch > epochs:
        raise bad(f"stage {stage!r} at epoch {epoch}, but the config has {epochs} epoch(s) "
                  "for it")
    have, not_yet = _STAGE_RECORDS[stage]
    missing = [_label(k) for k in have if not _held(records, k)]
    if missing:
        raise bad(f"stage {stage!r}, but the records lack {missing}, which the stages before it "
                  "write (was the stage edited?)")
    ahead = [_label(k) for k in not_yet if _held(records, k)]
    if ahead:
        raise bad(f"stage {stage!r}, but the records already hold {ahead}, which later stages "
                  "write (was the stage edited?)")
    history = records.get(f"{stage}_history", [])
    if not isinstance(history, list) or len(history) < epoch:
        raise bad(f"stage {stage!r} at epoch {epoch}, but {stage}_history holds "
                  f"{len(history) if isinstance(history, list) else history!r} epoch(s)")
    absent = [name for name in _STAGE_FOLDERS[stage] if not (out / name).is_dir()]
    if absent:
        raise bad(f"stage {stage!r}, but {[str(out / a) for a in absent]} is missing")
    return state


def read_folder(out: Path, config: PruneConfig, restart: bool, run: _Run) -> dict:
    """Check, without writing anything, that ``out`` can hold (or resume) this run.

    Returns ``{"saved": config or None, "remove_dense": bool (``restart`` discards a reference
    trained under other or unknown settings), "state": dict, "optimizer": saved optimiser state
    or None}``. Refuses a folder that holds a run with another config, saved models that do
    not load, and a checkpoint whose files are damaged, edited or disagree with each other.
    """
    if out.exists() and not out.is_dir():
        raise PipelineError(f"{out} is a file; the output is a folder: choose another path")
    saved, damaged = _read_saved_config(out, restart)
    if saved is not None and saved != config and not restart:
        diff = {k: [v, getattr(config, k)] for k, v in saved.to_dict().items()
                if getattr(config, k) != v}
        raise PipelineError(
            f"{out} holds a run with another config (setting: [saved, now]: {diff}); choose "
            "another output folder, or restart there (--restart, restart=True)"
        )
    remove_dense = restart and (damaged or (saved is not None and any(
        getattr(saved, k) != getattr(config, k) for k in REFERENCE_FIELDS)))
    fresh = {"stage": "reference", "epoch": 0, "records": {}}
    found = {"saved": saved, "remove_dense": remove_dense, "state": fresh, "optimizer": None}
    checkpoint = out / "checkpoint"
    if (out / "dense").exists() and not remove_dense:
        _check_loads(run, out / "dense", "the dense reference")
    if restart or not checkpoint.exists():
        return found
    state_path, opt_path = checkpoint / "state.json", checkpoint / "optimizer.pt"
    try:
        text = state_path.read_text()
    except FileNotFoundError:
        raise PipelineError(f"{state_path} is missing: {_FIX}") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{state_path} is not valid JSON ({json_error_detail(err, text)}; truncated?): "
            f"{_FIX}") from None
    state = _check_state(state, out, config)
    stage, epoch = state["stage"], state["epoch"]
    for name in _STAGE_FOLDERS[stage][1:]:
        _check_loads(run, out / name, "a saved model of this run")
    model = _check_loads(run, checkpoint / "model", "the checkpoint's model")
    if stage in ("reference", "spr", "prune") and layer_widths(model) != layer_widths(
            run.build()):
        raise PipelineError(f"{state_path}: stage {stage!r} trains the dense network, but the "
                            f"checkpoint's model is pruned (was the stage edited?): {_FIX}")
    if stage in ("reference", "spr", "finetune") and epoch > 0:
        if not opt_path.exists():
            raise PipelineError(f"{opt_path} is missing (stage {stage!r}, epoch {epoch}): "
                                f"{_FIX}")
        try:
            saved_opt = torch.load(opt_path, weights_only=True, map_location="cpu")
            if not (isinstance(saved_opt, dict) and {"optimizer", "schedule"} <= set(saved_opt)):
                raise ValueError("it lacks the optimizer or schedule state")
        except Exception as err:  # torch raises several kinds on a truncated file
            raise PipelineError(f"{opt_path} does not load ({type(err).__name__}: "
                                f"{str(err)[:200]}; truncated?): {_FIX}") from None
        found["optimizer"] = saved_opt
    return {**found, "state": state}


def _check_loads(run: _Run, path: Path, what: str) -> nn.Module:
    try:
        return run.load(path)
    except (OSError, ValueError, RuntimeError) as err:
        raise PipelineError(f"{path}: {what} does not load ({err}): {_FIX}") from None


def open_folder(out: Path, config: PruneConfig, restart: bool, found: dict) -> None:
    """Create ``out``, apply ``restart`` and write ``config.json`` (after :func:`read_folder`)."""
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
    if restart and is_main():
        for name in ("checkpoint", "spr", "pruned", "results.json"):
            _remove(out / name)
        if found["remove_dense"]:
            _remove(out / "dense")  # trained under other (or unknown) settings
    if is_main():
        write_text_atomic(out / "config.json", config.to_json())
    barrier()
