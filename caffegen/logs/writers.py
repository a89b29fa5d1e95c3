"""Curves -> files: ``LOG.train`` and ``LOG.test`` in parse_log.py's CSV layout, and ``LOG.json``.

The JSON document is ``Curves.to_json()``, laid out with one table row a line, so that a million-row table is
written row by row (by the C writer for a native table) instead of through one giant ``json.dumps``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .curves import Curves

__all__ = ["write_outputs", "write_json"]


def write_outputs(curves: Curves, log_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``LOG.train``, ``LOG.test`` (CSV, parse_log.py naming) and ``LOG.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(log_path).name
    written = [curves.train.to_csv(out / f"{base}.train"), curves.test.to_csv(out / f"{base}.test")]
    return written + [write_json(curves, out / f"{base}.json")]


def write_json(curves: Curves, path: str | Path) -> Path:
    """``curves.to_json()`` as a file (strict JSON: nonfinite numbers as strings), one table row a line."""
    path = Path(path)
    head = json.dumps(curves.json_head(), indent=1, allow_nan=False)
    path.write_text(head[:-2])  # without the closing "\n}"
    with path.open("a") as fh:  # append mode: a native table's C writer appends between our writes
        for name, table in (("train", curves.train), ("test", curves.test)):
            fh.write(f',\n "{name}": {{\n  "columns": {json.dumps(list(table.columns))},\n  "rows": [\n')
            table.write_json_rows(fh, path)
            fh.write("  ]\n }")
        fh.write("\n}\n")
    return path
