"""experiments/_llm_layers.py: the down_proj pruning problem of a real SmolLM2-135M layer, built
from 512 calibration tokens of *Emma* (two windows of 256). Skipped when the llm extra or the
data (``make data``: data/smollm2, data/austen) is absent."""


import numpy as np
import pytest
import torch

from tests.experiments.importing import import_experiment


def require_smollm2():
    pytest.importorskip("transformers", reason="the llm extra is not installed")
    pytest.importorskip("gguf", reason="the llm extra is not installed")
    from compress_extras.llm import find_data
    from compress_extras.llm._models import SMOLLM2_GGUF
    from spr.data import DatasetNotFoundError

    try:
        find_data("smollm2", required=(SMOLLM2_GGUF,))
        find_data("austen", required=("Rdata.rdb", "Rdata.rdx"))
    except DatasetNotFoundError:
        pytest.skip("SmolLM2 or the Austen text is not installed (make data)")


@pytest.mark.slow
def test_down_proj_problem_of_a_real_layer():
    require_smollm2()
    ll = import_experiment("_llm_layers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        problem = ll.down_proj_problem(1, n_tokens=512, window=256)
    finally:
        torch.set_num_threads(threads)

    assert problem.gram.shape == (1536, 1536) and problem.xty.shape == (1536, 576)
    assert problem.yty.shape == (576,)
    assert problem.group_size == 1 and problem.n_groups == 1536 and problem.n_out == 576
    assert np.array_equal(problem.gram, problem.gram.T)
    eig = np.linalg.eigvalsh(problem.gram)
    assert eig[-1] > 0 and eig[0] >= -1e-8 * eig[-1]
    # the default lam: 1e-3 * trace(gram) / d, from the same (first-token-free) inputs
    assert problem.lam == pytest.approx(1e-3 * np.trace(problem.gram) / 1536, rel=1e-9)

    W0 = ll.down_proj_layer(1).weight.detach().double().numpy()
    assert W0.shape == (576, 1536)
    assert problem.M == pytest.approx(2 * np.abs(W0).max())
    assert abs(problem.loss(W0)) <= 1e-8 * problem.yty.sum()
