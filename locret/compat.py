"""The transformers releases locret supports, checked when locret is imported.

locret subclasses transformers' attention, cache and model classes, so a release outside the tested range
may fail in ways far from the cause; importing locret there is an ImportError naming the supported range.
"""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

# Oldest and newest supported (tested) minor releases, inclusive; pyproject.toml pins the same range.
OLDEST_TRANSFORMERS = Version("5.23")
NEWEST_TRANSFORMERS_MINOR = (5, 24)
SUPPORTED_RANGE = ">=5.23,<5.25"
# The keyword the model and attention forwards take the KV cache by: transformers 5.24 renamed
# ``past_key_values`` to ``cache`` (the old name still works there, with a deprecation warning).
CACHE_KWARG = "cache" if Version(version("transformers")) >= Version("5.24") else "past_key_values"


def is_supported(installed: str) -> bool:
    release = Version(installed)
    return release >= OLDEST_TRANSFORMERS and release.release[:2] <= NEWEST_TRANSFORMERS_MINOR


def check_transformers_version(installed: str | None = None) -> None:
    """ImportError unless the installed transformers (or ``installed``) is in the supported range."""
    installed = installed or version("transformers")
    if not is_supported(installed):
        raise ImportError(
            f"locret supports transformers {SUPPORTED_RANGE} (tested: 5.23 and 5.24), but {installed} is "
            f'installed: pip install "transformers{SUPPORTED_RANGE}"'
        )


check_transformers_version()
