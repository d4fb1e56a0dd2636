"""Access to the solvers, with errors that say what to install."""

from __future__ import annotations

__all__ = ["highs", "require"]


def require(module: str, package: str, purpose: str):
    """Import ``module`` or raise ImportError naming the pip package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the package {package!r}: pip install {package}"
        ) from err


def highs():
    """A persistent Pyomo interface to HiGHS (package ``highspy``)."""
    require("highspy", "highspy", "solving the layer MIP with HiGHS")
    from pyomo.contrib.solver.solvers.highs import Highs

    solver = Highs()
    if not solver.available():
        raise ImportError("HiGHS is not available to Pyomo: pip install highspy")
    return solver
