"""experiments/rtn_zero_point.py on SmolLM2's first three decoder layers (skipped without `make
data`): the JSON it writes, and the mechanism it measures on layer 2's down_proj, whose input has
a massive position-0 activation: small weights on that column, and an output error at position 0
that only the grid with an exact zero keeps small."""

import json

import pytest

from tests.experiments.importing import import_experiment

pytest.importorskip("transformers", reason="the llm extra (transformers, gguf) is not installed")


def test_the_zero_level_protects_the_sink_column(tmp_path):
    script = import_experiment("rtn_zero_point")
    from compress_extras.llm._files import find_data
    from spr.data import DatasetNotFoundError

    try:
        find_data("smollm2"), find_data("austen")
    except DatasetNotFoundError as error:
        pytest.skip(f"SmolLM2 or the Austen text is not installed (make data): {error}")
    out = tmp_path / "zero.json"
    payload = script.main(["--windows", "1", "--window", "64", "--max-layers", "21",
                           "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    row = payload["layers"]["model.layers.2.mlp.down_proj"]
    assert row["activation_ratio"] > 100 and row["col_weight"] < 0.5
    assert row["integer_zero"]["col_error"] < 0.7 < row["float_min"]["col_error"]
    assert row["integer_zero"]["first"] < 0.5 * row["float_min"]["first"]
