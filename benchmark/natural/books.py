"""Haystack text: the evaluation books of a split, Project Gutenberg header and footer removed."""

import re
from functools import cache
from pathlib import Path

from benchmark.natural.splits import HAYSTACK_BOOKS, Split

_START = re.compile(r"^[ \t]*\*\*\* ?START OF.*$", re.MULTILINE)
_END = re.compile(r"^[ \t]*\*\*\* ?END OF.*$", re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """The text between the ``*** START OF`` and ``*** END OF`` lines, with ``\\n`` line ends."""
    text = text.replace("\ufeff", "").replace("\r\n", "\n")
    start, end = _START.search(text), _END.search(text)
    if start is None or end is None:
        raise ValueError("not a Project Gutenberg text: no '*** START OF' / '*** END OF' markers")
    return text[start.end() : end.start()].strip()


def book_path(data_dir: str | Path, name: str) -> Path:
    """``<data_dir>/gutenberg/<name>.txt`` (``data_dir`` may also be the gutenberg folder itself)."""
    root = Path(data_dir)
    for candidate in (root / "gutenberg" / f"{name}.txt", root / f"{name}.txt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"book {name}.txt not found under {root} or {root / 'gutenberg'}")


@cache
def split_text(data_dir: str, split: Split) -> str:
    """The split's books, stripped, joined in their fixed order by a blank line."""
    return "\n\n".join(
        strip_gutenberg(book_path(data_dir, b).read_text("utf-8")) for b in HAYSTACK_BOOKS[split]
    )
