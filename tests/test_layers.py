"""The package's import rules (DESIGN.md section 1) hold.

Proves: (1) arrows point down only — protocol imports no other ottla package,
storage only protocol, cluster only storage and protocol; (2) packages import each
other only through their public `__init__` surface; (3) PURE modules import no
asyncio, socket, time or random.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ottla"

# package -> ottla packages it may import
ALLOWED = {
    "protocol": set(),
    "storage": {"protocol"},
    "cluster": {"storage", "protocol"},
    "broker": {"cluster", "storage", "protocol", "config"},
    # The CLI's admin subcommands talk to brokers over the network through ottla.client.
    "commands": {"protocol", "client", "config"},
}
IMPURE = {"asyncio", "socket", "time", "random", "threading", "selectors"}
# Modules that must stay PURE (relative to ottla/); a directory means all of it.
PURE = [
    "protocol",
    "storage/retention.py",
    "cluster/raft/state.py",
    "cluster/raft/core.py",
    "cluster/raft/memlog.py",
    "cluster/raft/messages.py",
    "cluster/metadata/image.py",
    "cluster/controller/rules.py",
    "cluster/controller/placement.py",
    "cluster/controller/leadership.py",
    "cluster/controller/fencing.py",
    "cluster/controller/reassignment.py",
    "cluster/replication.py",
    "broker/groups/state.py",
    "broker/groups/records.py",
    "broker/groups/record_fields.py",
    "broker/groups/consumer_state.py",
    "broker/groups/consumer_records.py",
]


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py"))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _package_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else None


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_arrows_point_down(path: Path) -> None:
    package = _package_of(path)
    if package is None:
        return
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "ottla" or len(parts) < 2 or parts[1] == package:
            continue
        assert parts[1] in ALLOWED.get(package, set()), (
            f"{path.relative_to(ROOT)} imports {name}: {package} may not import {parts[1]}"
        )
        assert len(parts) == 2, (
            f"{path.relative_to(ROOT)} imports {name}: use the public surface ottla.{parts[1]}"
        )


def _is_pure(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == p or relative.startswith(p + "/") for p in PURE)


@pytest.mark.parametrize(
    "path", [p for p in _modules() if _is_pure(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_pure_modules_import_no_io(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] not in IMPURE, f"PURE {path.relative_to(ROOT)} imports {name}"


def test_rules_see_the_protocol_package() -> None:
    # Guards the test itself: if the tree moved, the parametrised tests would be empty.
    assert any(_is_pure(p) for p in _modules())
