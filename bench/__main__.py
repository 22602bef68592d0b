"""`python -m bench`: run every benchmark module under bench/ in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    """Run each `bench.<name>` module's `main()`; returns non-zero if one failed."""
    failed = 0
    for module in sorted(pkgutil.iter_modules([str(Path(__file__).parent)])):
        if module.name.startswith("_"):
            continue
        print(f"== bench.{module.name}", flush=True)
        entry = getattr(importlib.import_module(f"bench.{module.name}"), "main", None)
        if entry is None:
            continue
        if entry(sys.argv[1:]) not in (0, None):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
