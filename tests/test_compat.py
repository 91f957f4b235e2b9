"""locret names the transformers releases it supports, and refuses others at import."""

import subprocess
import sys
from pathlib import Path

import pytest

from locret.compat import SUPPORTED_RANGE, check_transformers_version, is_supported


@pytest.mark.parametrize(("release", "ok"), [("5.23.0", True), ("5.24.0", True), ("5.24.3", True),
                                            ("5.22.9", False), ("5.25.0", False), ("6.0.0", False),
                                            ("5.25.0.dev0", False), ("4.57.1", False)])  # fmt: skip
def test_the_supported_range(release, ok):
    assert is_supported(release) is ok


def test_an_unsupported_release_is_an_import_error_naming_the_range():
    with pytest.raises(
        ImportError, match=r"supports transformers >=5\.23,<5\.25 .* but 5\.25\.0 is installed"
    ):
        check_transformers_version("5.25.0")
    script = (
        "import importlib.metadata as m; real = m.version; "
        "m.version = lambda name: '5.22.0' if name == 'transformers' else real(name); import locret"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True)
    assert result.returncode != 0 and f"locret supports transformers {SUPPORTED_RANGE}" in result.stderr


def test_pyproject_pins_the_same_range():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"transformers{SUPPORTED_RANGE}"' in pyproject
