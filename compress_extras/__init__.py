"""Compression methods that reuse spr's MILP layer: DenseShift, binary networks, ICQuant,
bit allocation. Each arrives with its own issue; this package is the place they land."""

__all__: list[str] = []
