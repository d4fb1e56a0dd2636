"""Every Python snippet of the README runs verbatim (each in a fresh interpreter, in an empty
folder), so a newcomer's copy and paste works."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spr.data import DatasetNotFoundError, fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def _have_fashion_mnist() -> bool:
    try:
        fashion_mnist("test")
    except DatasetNotFoundError:
        return False
    return True


def test_the_readme_has_snippets_and_no_link_outside_the_repository():
    text = (ROOT / "README.md").read_text()
    assert len(SNIPPETS) >= 7
    assert "../" not in text and "shared/" not in text


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=lambda i: f"snippet{i + 1}")
def test_snippet_runs_verbatim(index, tmp_path):
    code = SNIPPETS[index]
    if "fashion_mnist" in code and not _have_fashion_mnist():
        pytest.skip("Fashion-MNIST is not installed (make data)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPR_DATA=str(ROOT / "data"),
               OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"README snippet {index + 1} failed:\n{code}\n{run.stderr[-3000:]}"
