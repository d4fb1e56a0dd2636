"""Solver access: clear errors for missing packages, and Pyomo's placeholders kept harmless."""

import pickle

import numpy as np
import pytest

import mip
from mip._solver import require
from tests.mip.instances import random_problem


def test_missing_package_names_what_to_install():
    with pytest.raises(ImportError, match="pip install not-a-real-solver"):
        require("not_a_real_solver", "not-a-real-solver", "a test")


def test_module_scan_survives_pyomo_placeholders():
    """pickle.whichmodule (reached by torch.compile's cache) scans sys.modules; Pyomo's
    placeholders for uninstalled optional packages used to make that scan raise."""
    mip.solve_outer_approximation(random_problem(np.random.default_rng(0), 4))
    mip.big_m_relaxation(random_problem(np.random.default_rng(0), 4))
    assert pickle.whichmodule(object(), "no_such_name_anywhere") == "__main__"


def test_lazy_public_api():
    """The solvers load on first use; every public name resolves."""
    for name in mip.__all__:
        assert getattr(mip, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'solve_everything'"):
        mip.solve_everything  # noqa: B018
