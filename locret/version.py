"""The package version, in a module of its own so that saved files can record it without importing locret."""

__version__ = "0.5.0"
