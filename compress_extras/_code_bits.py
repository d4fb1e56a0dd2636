"""One name per concept for the bits of a quantizer option.

- ``option.bits``: the code width ``b``, an int (``UniformQuant(4).bits == 4``), the same name as
  :class:`compress_extras.ICQuantizer`'s ``bits`` and every constructor's first argument;
- ``option.storage_bits(W)``: what storing ``W`` costs in bits, overhead included;
- ``bits_per_weight``: a measured rate, ``storage_bits(W) / W.numel()`` (as
  :attr:`compress_extras.ICQuantized.bits_per_weight` and the experiments' tables report it).

Before this, options stored the width as ``bits_per_weight`` and counted storage with
``bits(W)``. For one release both old spellings still work with a ``DeprecationWarning``:
``option.bits(W)`` (the width is a :class:`CodeBits`, an int that forwards a call to
``storage_bits``), ``option.bits_per_weight`` and the constructor keyword ``bits_per_weight=``.

>>> import warnings, torch
>>> from compress_extras import UniformQuant
>>> q, W = UniformQuant(4), torch.ones(2, 8)
>>> q.bits, q.storage_bits(W)
(4, 128.0)
>>> with warnings.catch_warnings(record=True):
...     q.bits(W) == q.storage_bits(W)
True
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor

from mip._deprecation import warn_deprecated

__all__ = ["CodeBits", "storage_bits", "with_code_bits", "DeprecatedBitsMethod"]


class CodeBits(int):
    """An option's code width ``b`` (an int); calling it, ``option.bits(W)``, is the deprecated
    spelling of ``option.storage_bits(W)``. Pickles and copies as a plain int."""

    def __new__(cls, value: int, owner: Any = None) -> CodeBits:
        self = super().__new__(cls, value)
        self._owner = owner
        return self

    def __call__(self, W: Tensor) -> float:
        warn_deprecated("option.bits(W)",
                        "option.storage_bits(W) (option.bits is now the code width)")
        return self._owner.storage_bits(W)

    def __reduce__(self):
        return (int, (int(self),))


def with_code_bits(cls: type) -> type:
    """Class decorator for a frozen option dataclass whose int field ``bits`` is the code width:
    wraps it in :class:`CodeBits` after ``__init__``, accepts the old keyword
    ``bits_per_weight=`` and adds the old attribute ``bits_per_weight`` (both deprecated)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs) -> None:
        if "bits_per_weight" in kwargs:
            warn_deprecated(f"{cls.__name__}(bits_per_weight=...)", f"{cls.__name__}(bits=...)")
            kwargs["bits"] = kwargs.pop("bits_per_weight")
        init(self, *args, **kwargs)
        object.__setattr__(self, "bits", CodeBits(self.bits, self))

    def bits_per_weight(self) -> int:
        warn_deprecated(f"{cls.__name__}.bits_per_weight", f"{cls.__name__}.bits")
        return int(self.bits)

    cls.__init__ = __init__
    cls.bits_per_weight = property(bits_per_weight)
    return cls


class DeprecatedBitsMethod:
    """Mixin for options without a code width (float, binary, pruned): keeps the deprecated
    ``bits(W)`` method, forwarding to ``storage_bits(W)``."""

    def bits(self, W: Tensor) -> float:
        warn_deprecated("option.bits(W)", "option.storage_bits(W)")
        return self.storage_bits(W)


def storage_bits(option: Any, W: Tensor) -> float:
    """``option.storage_bits(W)``; for a user's option written against the old protocol (a
    ``bits(W)`` method and no ``storage_bits``), ``option.bits(W)`` with a DeprecationWarning."""
    method = getattr(option, "storage_bits", None)
    if method is not None:
        return float(method(W))
    warn_deprecated(f"{type(option).__name__}.bits(W) as the storage count",
          "a storage_bits(W) method (QuantizerOption)")
    return float(option.bits(W))
