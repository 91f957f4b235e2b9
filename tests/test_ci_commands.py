"""CI runs the README's own two commands: the extraction finds them, or fails saying why."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "readme_commands.py"


def run(readme: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(readme)], capture_output=True, text=True)


def test_the_readme_holds_a_demo_and_a_test_command():
    result = run(ROOT / "README.md")
    assert result.returncode == 0, result.stderr
    demo, tests = result.stdout.splitlines()
    assert demo.endswith("python example.py") and "pip install -e . " in demo
    assert "pip install torch==2.13.0" in demo and "pip install torch==2.13.0" in tests
    assert tests.endswith("python -m pytest -q")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# locret\n\n```bash\necho hi\n```\n", 'no heading containing "First commands"'),
        ("## First commands\n\n```bash\necho demo\n```\n\n```python\nprint()\n```\n", "found 1"),
        (
            "## First commands\n\n```bash\necho a\necho b\n```\n\n```bash\necho c\n```\n",
            "exactly one command",
        ),
        ("## First commands\n\n```bash\necho a\n", "not closed"),
    ],
)
def test_missing_or_ambiguous_commands_fail_loudly(tmp_path, text, message):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    result = run(readme)
    assert result.returncode == 1 and message in result.stderr and not result.stdout


def test_continued_lines_are_one_command(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "## First commands\n\n```bash\npip install x \\\n    && echo ok\n```\n\n```bash\nls\n```\n"
    )
    assert run(readme).stdout.splitlines() == ["pip install x && echo ok", "ls"]
