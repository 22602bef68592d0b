"""Rendering command results: aligned human tables by default, JSON with --json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["print_json", "print_table"]


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    """Columns padded to their widest cell; None shows as '-'."""
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    print(
        "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        file=out,
    )
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str), file=out)
