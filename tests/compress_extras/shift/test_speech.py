"""Issue 9's speech claim: on the Free Spoken Digit Dataset's MFCC features, a 3-bit DenseShift
ResNet (QAT from the float model) reaches at least 95% of the float model's held-out accuracy.
A real (short) training run on data/fsdd/digits.npz; skipped when the file is absent."""

from pathlib import Path

import pytest
import torch

from tests.experiments.importing import import_experiment

ROOT = Path(__file__).resolve().parents[3]
FSDD = ROOT / "data" / "fsdd" / "digits.npz"



@pytest.mark.slow
def test_3bit_denseshift_reaches_95_percent_of_float_on_speech():
    if not FSDD.exists():
        pytest.skip(f"{FSDD} not found: run `make data` to install the FSDD MFCC features")
    ds = import_experiment("denseshift")
    torch.manual_seed(0)
    data = ds.speech_data(frames=32, seed=0)
    (xtr, ytr), (xte, yte), info = data
    assert info["train"] == 2400 and info["test"] == 600
    assert torch.equal(torch.bincount(yte), torch.full((10,), 60))  # stratified
    result = ds.speech_run((3,), epochs=6, qat_epochs=3, data=data, progress=False)
    float_acc = result["rows"][0]["accuracy"]
    shift_acc = result["rows"][1]["accuracy"]
    assert result["rows"][1]["model"] == "denseshift3"
    assert float_acc > 80.0, result["rows"]  # the float model itself learned the task
    assert shift_acc >= 0.95 * float_acc, result["rows"]
