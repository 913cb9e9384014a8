"""Freezes changed event schemas as new released versions.

    .venv/bin/python -m relaystream.core.events.release [SCHEMAS_DIR]

For every event whose current schema (by fingerprint) is not yet among its released
versions, writes `SCHEMAS_DIR/released/<Name>/v<N+1>.avsc`: the self-contained schema with
embedded types inlined, so later edits of a shared type cannot change a frozen version.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .registry import SchemaRegistry


def pending_releases(registry: SchemaRegistry) -> dict[str, tuple[int, str]]:
    """Event name -> (next version number, JSON text) for each unreleased current schema."""
    pending: dict[str, tuple[int, str]] = {}
    for name in registry.names():
        current = registry.current(name)
        released = registry.released(name)
        if any(v.fingerprint == current.fingerprint for v in released.values()):
            continue
        text = json.dumps(current.source, indent=2, ensure_ascii=False) + "\n"
        pending[name] = (max(released, default=0) + 1, text)
    return pending


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    schemas_dir = Path(args[0] if args else "schemas")
    for name, (version, text) in pending_releases(SchemaRegistry.from_package()).items():
        target = schemas_dir / "released" / name / f"v{version}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"released {name} v{version}: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
