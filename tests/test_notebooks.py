"""The notebooks under ``notebooks/`` run top to bottom without an error (nbclient).

The test runs each one in quick mode (``SPR_NOTEBOOK_QUICK=1`` in the kernel's environment:
fewer epochs, groups and keep counts) on the ``python3`` kernel — ipykernel's wheel installs
its spec into the environment (``<sys.prefix>/share/jupyter/kernels/python3``, argv
``python``, which jupyter_client replaces by the running interpreter), so a fresh
``pip install -e ".[dev]"`` needs no ``ipykernel install`` — and checks that the committed
copies carry the outputs of a full-size run, so they render when browsed.

Re-execute the notebooks at full size and write their outputs into the ``.ipynb`` files::

    .venv/bin/python tests/test_notebooks.py            # every notebook
    .venv/bin/python tests/test_notebooks.py 02         # those whose name contains "02"
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
QUICK_VARIABLE = "SPR_NOTEBOOK_QUICK"


def execute(path: Path, timeout: int = 600):
    """Run the notebook at ``path`` in a fresh kernel (cwd: notebooks/); return it with outputs.

    The kernel inherits this process's environment, so set ``SPR_NOTEBOOK_QUICK`` before.
    """
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()
    return nb


def output_text(nb) -> str:
    """Every text output of ``nb`` (streams, plain-text results, error tracebacks)."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(QUICK_VARIABLE, "1")
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # this environment's kernelspec first
    nb = execute(path)  # raises CellExecutionError on the first failing cell
    assert "QUICK=True" in output_text(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_full_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    missing = [i for i, cell in enumerate(code) if cell.execution_count is None]
    assert not missing, f"{path.name}: code cells {missing} were not executed"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was saved with an error output"
    text = output_text(nb)
    assert "QUICK=False" in text, f"{path.name} was saved from a quick run"
    assert str(ROOT) not in text, f"{path.name}: outputs show an absolute path"


def test_notebooks_found() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert "01_perspective_regularizer.ipynb" in names
    assert "02_layerwise_mip.ipynb" in names


def _strip_paths(nb) -> None:
    """Replace the repository's absolute path in text outputs by a relative one."""
    root = str(ROOT) + os.sep
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = output["text"].replace(root, "")
            data = output.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = data["text/plain"].replace(root, "")


def main(patterns: list[str]) -> None:
    """Execute the notebooks at full size and save them with their outputs."""
    os.environ.pop(QUICK_VARIABLE, None)
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
    chosen = [p for p in NOTEBOOKS if not patterns or any(s in p.name for s in patterns)]
    for path in chosen:
        start = time.perf_counter()
        nb = execute(path)
        _strip_paths(nb)
        nbformat.write(nb, path)
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {time.perf_counter() - start:.1f} s, {size:.2f} MB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
