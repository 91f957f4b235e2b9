"""Print the README's two first commands (demo, then tests), one per line, for ``.ci/run``.

They are the first two fenced ```bash blocks after the heading that contains "First commands"; each must
hold exactly one command (backslash continuations are joined). Anything else exits with status 1 and says
what is wrong, so CI can never run a stale copy or nothing at all.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HEADING = re.compile(r"^#+\s.*First commands", re.IGNORECASE)
FENCE = re.compile(r"^```(\w*)\s*$")


def bash_blocks(lines: list[str]) -> list[list[str]]:
    """The ```bash blocks after the "First commands" heading, in order."""
    start = next((i for i, line in enumerate(lines) if HEADING.match(line)), None)
    if start is None:
        raise ValueError('no heading containing "First commands"')
    blocks: list[list[str]] = []
    current: list[str] | None = None
    language = ""
    for line in lines[start + 1 :]:
        fence = FENCE.match(line.strip())
        if fence and current is None:
            current, language = [], fence.group(1)
        elif fence and line.strip() == "```":
            if language == "bash":
                blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        raise ValueError("a fenced block after the heading is not closed")
    return blocks


def one_command(block: list[str], what: str) -> str:
    text = "\n".join(line for line in block if line.strip() and not line.lstrip().startswith("#"))
    command = re.sub(r"\s*\\\n\s*", " ", text).strip()
    if not command or "\n" in command:
        raise ValueError(f"the {what} block must hold exactly one command, got {block!r}")
    return command


def readme_commands(readme: Path) -> tuple[str, str]:
    blocks = bash_blocks(readme.read_text().splitlines())
    if len(blocks) < 2:
        raise ValueError(f'expected two ```bash blocks after "First commands", found {len(blocks)}')
    return one_command(blocks[0], "first (demo)"), one_command(blocks[1], "second (tests)")


def main() -> int:
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    try:
        demo, tests = readme_commands(readme)
    except (OSError, ValueError) as err:
        print(f"error: {readme}: {err}", file=sys.stderr)
        return 1
    print(demo)
    print(tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
