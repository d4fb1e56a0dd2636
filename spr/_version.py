"""The package version (one place: the package and the saved-model format read it)."""

__version__ = "0.1.0"
