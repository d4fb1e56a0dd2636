"""Access to the solvers, with errors that say what to install."""

from __future__ import annotations

import sys

__all__ = ["forget_unavailable_modules", "highs", "require"]


def forget_unavailable_modules() -> None:
    """Drop Pyomo's placeholders for optional packages that are not installed from sys.modules.

    Pyomo registers deferred imports in ``sys.modules`` whose attribute access raises
    ``DeferredImportError`` (an ImportError, not an AttributeError). ``pickle.whichmodule``,
    which torch.compile's cache reaches, scans every module in ``sys.modules`` and lets that error
    escape, so a model compiled after Pyomo was imported would fail. Removing the placeholders of
    missing packages leaves only real modules behind; Pyomo keeps its own references, so its
    availability checks are unaffected.
    """
    for name, module in list(sys.modules.items()):
        if not name.startswith("pyomo.common.dependencies."):
            continue
        try:
            hasattr(module, "__spr_probe__")  # resolves the placeholder
        except ImportError:  # Pyomo's DeferredImportError: the package is not installed
            del sys.modules[name]


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

    forget_unavailable_modules()  # the solver interface registers more placeholders
    solver = Highs()
    if not solver.available():
        raise ImportError("HiGHS is not available to Pyomo: pip install highspy")
    return solver
