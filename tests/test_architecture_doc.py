"""Every Python block of docs/ARCHITECTURE.md runs verbatim (each in a fresh interpreter, in an
empty folder): the ways to add a solver, a quantizer option, a grouping and a pipeline stage."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def test_the_document_shows_each_way_to_extend():
    for heading in ("a layer solver", "a quantizer option", "a grouping", "a pipeline stage"):
        assert f"## Adding {heading}" in TEXT
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_block_runs_verbatim(index, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"block {index + 1} failed:\n{run.stderr[-3000:]}"
