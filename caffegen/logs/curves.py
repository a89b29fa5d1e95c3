"""What a Caffe log says, as data: two :class:`Table` (train, test) inside one :class:`Curves`.

The column layout is that of Caffe's own ``tools/extra/parse_log.py``: ``NumIters, Seconds, LearningRate``,
then one column per net output (``loss``, ``accuracy_at_1``...; outputs of test net #k > 0 as ``NAME@netk``), and
a ``Segment`` column when the log holds a resumed run. A cell is a float (``nan``/``inf`` kept as such), or
``None`` where the log had no value for it.

The names of the metrics caffegen's own nets print (:data:`TOP1`, :data:`TOP5`) are defined here, once: the
templates name their Accuracy layers with :func:`accuracy_name`, and the sweep, report and diagnosis look for
those names.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

__all__ = ["BASE_COLUMNS", "TOP1", "TOP5", "accuracy_name", "metric_label", "is_loss_metric", "best", "Table",
           "Curves"]

BASE_COLUMNS = ("NumIters", "Seconds", "LearningRate")
NAN = float("nan")


def accuracy_name(k: int) -> str:
    """The output name of caffegen's top-``k`` Accuracy layer (``accuracy_at_1``)."""
    return f"accuracy_at_{k}"


TOP1 = accuracy_name(1)
TOP5 = accuracy_name(5)


def metric_label(name: str | None) -> str:
    """How a metric is named to people: ``top-1``/``top-5`` for caffegen's own Accuracy outputs, else its name."""
    return {TOP1: "top-1", TOP5: "top-5"}.get(name or TOP1, name or "top-1")


def is_loss_metric(name: str) -> bool:
    """Lower is better for losses and errors; higher is better for everything else (accuracy, top-k, mAP)."""
    low = name.lower()
    return "loss" in low or "error" in low or low.endswith("err")


def best(series: Sequence[tuple[int, float]], name: str) -> tuple[float, int] | None:
    """Best finite value of a (iteration, value) series and the first iteration that reached it (min for
    losses, max otherwise); None when no value is finite."""
    finite = [(v, it) for it, v in series if v is not None and math.isfinite(v)]
    if not finite:
        return None
    if is_loss_metric(name):
        return min(finite, key=lambda p: p[0])
    best_v = max(v for v, _ in finite)
    return next((v, it) for v, it in finite if v == best_v)


def json_number(v: Any) -> Any:
    """Strict JSON for a cell: nonfinite numbers as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    return v


class Table:
    """Rows of one phase (train or test): ``columns`` in first-seen order, ``rows`` as dicts.

    The native scanner's tables (:class:`caffegen.logs.native.scan.NativeTable`) have the same methods and read
    their cells out of C memory instead; they are read-only (``copy()`` gives a Table to edit)."""

    def __init__(self, columns: Sequence[str] | None = None, rows: list[dict] | None = None):
        self.columns: list[str] = list(columns) if columns else list(BASE_COLUMNS)
        self.rows: list[dict] = rows if rows is not None else []

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(columns={self.columns!r}, rows={len(self)})"

    def copy(self) -> Table:
        """A plain, editable Table with the same columns and rows."""
        return Table(list(self.columns), [dict(r) for r in self.rows])

    def column(self, name: str) -> list:
        """One column as a list (``None`` where missing)."""
        return [r.get(name) for r in self.rows]

    def metrics(self) -> list[str]:
        """The net-output columns (everything after NumIters/Seconds/LearningRate, minus Segment)."""
        return [c for c in self.columns if c not in BASE_COLUMNS and c != "Segment"]

    def series(self, name: str) -> list[tuple[int, float]]:
        """(iteration, value) pairs of one column, rows lacking it skipped; nan/inf kept."""
        return [(r["NumIters"], r[name]) for r in self.rows if r.get(name) is not None]

    def final_best(self, name: str) -> tuple[float | None, tuple[float, int] | None]:
        """The last value of a column and its best (:func:`best`)."""
        ser = self.series(name)
        return (ser[-1][1] if ser else None), best(ser, name)

    def to_csv(self, path: str | Path) -> Path:
        """Write like ``parse_log.py`` (csv module, numbers as Python prints them): header, then one line per
        row; missing cells empty, nan as ``nan``."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.columns)
            for row in self.rows:
                writer.writerow(["" if row.get(c) is None else row[c] for c in self.columns])
        return path

    def to_json(self) -> dict:
        """``{"columns": [...], "rows": [[...], ...]}``, strict JSON (see :func:`json_number`); missing as null."""
        return {"columns": list(self.columns),
                "rows": [[json_number(r.get(c)) for c in self.columns] for r in self.rows]}

    def write_json_rows(self, fh: IO[str], path: Path) -> None:  # noqa: ARG002 (the native table writes to path)
        """The ``rows`` of :meth:`to_json` into an open text file, one row a line (``write_outputs``' layout)."""
        if not self.rows:
            return
        cells = [[r.get(c) for c in self.columns] for r in self.rows]
        try:  # numbers only, all finite (the usual table): one C-speed dumps, then a line break between rows
            if not {type(v) for row in cells for v in row} <= {int, float, type(None)}:
                raise ValueError("not only numbers")
            text = json.dumps(cells, allow_nan=False, separators=(",", ":"))[1:-1].replace("],[", "],\n[")
        except ValueError:  # nan/inf cells (written as strings), or cells that are not numbers
            text = ",\n".join(json.dumps(row, allow_nan=False, separators=(",", ":"))
                              for row in self.to_json()["rows"])
        fh.write(text + "\n")


@dataclass
class Curves:
    """What a log says: the two tables plus what the run looked like as a whole.

    ``segments`` counts the runs in the log (a resumed run adds one; rows then carry a ``Segment`` column);
    ``fatal_line`` is the first line that says Caffe died; ``truncated_tail`` the unterminated last line of a
    file, which is not parsed (glog ends every line with a newline, so it was cut mid-write); ``engine`` says
    which parser read it (``"lines"``: the per-line reference, ``"native"``: the C scanner).
    """

    train: Table = field(default_factory=Table)
    test: Table = field(default_factory=Table)
    segments: int = 1
    fatal_line: str | None = None
    truncated_tail: str | None = None
    max_iter_seen: int | None = None
    seconds: float | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    nonfinite: bool = False
    loss_log: Sequence[tuple[int, float]] = field(default_factory=list)  # a list, or a lazy sequence
    engine: str = "lines"

    def train_loss(self) -> str | None:
        """The train column that holds the loss: ``loss`` if present, else the first column named like a loss."""
        return _pick_loss(self.train)

    def test_loss(self) -> str | None:
        return _pick_loss(self.test)

    def resolved(self) -> Curves:
        """Curves with one row per iteration, sorted: for a resumed run the later row of an iteration wins."""
        out = Curves(**{f.name: getattr(self, f.name) for f in fields(self)})
        out.train, out.test = _resolve(self.train), _resolve(self.test)
        return out

    def summary(self) -> dict:
        """Counts, last iteration, final and best test metrics: what ``caffegen parse`` prints."""
        final: dict[str, float] = {}
        best_: dict[str, tuple[float, int]] = {}
        for name in self.test.metrics():
            last, b = self.test.final_best(name)
            if last is not None:
                final[name] = last
            if b is not None:
                best_[name] = b
        return {"train_rows": len(self.train), "test_rows": len(self.test),
                "last_iteration": self.max_iter_seen, "segments": self.segments,
                "final_test": final, "best_test": best_, "first_loss": self.first_loss,
                "last_loss": self.last_loss, "nonfinite": self.nonfinite, "fatal_line": self.fatal_line,
                "seconds": self.seconds}

    def json_head(self) -> dict:
        """The JSON document's keys besides the two tables: the summary and the truncated tail."""
        s = self.summary()
        s["final_test"] = {k: json_number(v) for k, v in s["final_test"].items()}
        s["best_test"] = {k: [json_number(v), it] for k, (v, it) in s["best_test"].items()}
        s["first_loss"], s["last_loss"] = json_number(s["first_loss"]), json_number(s["last_loss"])
        return {"summary": s, "truncated_tail": self.truncated_tail}

    def to_json(self) -> dict:
        return {**self.json_head(), "train": self.train.to_json(), "test": self.test.to_json()}


def _pick_loss(table: Table) -> str | None:
    metrics = table.metrics()
    if "loss" in metrics:
        return "loss"
    return next((m for m in metrics if "loss" in m.lower()), None)


def _resolve(table: Table) -> Table:
    rows = table.rows
    if "Segment" not in table.columns and all(a["NumIters"] < b["NumIters"] for a, b in zip(rows, rows[1:])):
        return table
    by_iter: dict[int, dict] = {}
    for row in rows:
        by_iter[row["NumIters"]] = {k: v for k, v in row.items() if k != "Segment"}
    cols = [c for c in table.columns if c != "Segment"]
    return Table(cols, [by_iter[k] for k in sorted(by_iter)])
