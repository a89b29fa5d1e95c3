"""Caffe training logs -> curves: one streaming parser with two front ends.

:func:`parse_log` reads a whole log (file or lines) into a :class:`Curves` with a ``train`` and a ``test``
:class:`Table` in the column layout of Caffe's own ``tools/extra/parse_log.py``
(``NumIters, Seconds, LearningRate, <each net output>``). :class:`LogFollower` takes one line at a time,
for the sweep driver's live monitoring. Both feed the same :class:`_Builder`, through the same two text
handlers (``_head`` for the text after ``Iteration `` and ``_tail`` for every other line), so they cannot
drift apart.

Why the text is split on ``"Iteration "``: in every Caffe dialect the lines that matter follow an
``Iteration N, ...`` line (train outputs after ``loss =``, test outputs after ``Testing net``), and
``str.split`` runs at C speed, so the slow path works per logged iteration, not per line or per byte.

The fast path (:meth:`_Builder.fast`): a 1 MB buffer without any rare marker (``Solving``, fatal lines,
old ``Test score``) is cut by one compiled ``re.findall`` into train blocks, lr heads and test blocks; a
loop per match then does what the handlers would have done. It is taken only when every ``Iteration ``
and every `` net output #`` of the buffer lies in a match (checked before anything changes), so it gives
the same rows; otherwise the buffer takes the slow path.

The native path (:func:`_native_scan`): a log file of ``NATIVE_MIN`` bytes or more is first offered to a small C
scanner of our own (``caffegen/native/logscan.c``, built into the cache with the system compiler, loaded through
ctypes), which runs the same per-line state machine over the bytes in one pass and keeps its tables in C memory
(rows on demand; ``write_outputs`` has C write them). It declines (None) whatever it does not model exactly,
and without a compiler it is simply not there; then the paths below read the file.

The columnar path (:func:`_columnar`): a log file of ``COLUMNAR_MIN`` to ``COLUMNAR_MAX`` bytes is then read
whole with polars (compiled string kernels: one column of lines, literal finds/slices/casts) and numpy (the state machine
as ``cumsum``/``searchsorted``), and its tables stay columnar, so writing them costs no Python object per
cell. It declines (returns None, and the per-line machinery above reads the file) whenever the log holds
anything it cannot prove it reads exactly as the handlers do. polars is imported only when needed (it takes a
moment to import). Measured speed: ``docs/benchmarks/parse.md``.

Dialects read: BVLC ``Iteration N (x iter/s, ys/N iters), loss = X``; this project's Caffe
``Iteration N, loss = X`` / ``Iteration N, lr = X``; NVCaffe ``Iteration N (x iter/s, ...), 1.2/9ep,
loss = X`` and ``Iteration N, lr = X, m = M, wd = W, gs = G``; old ``Test score #k: X``; glog prefixes
with (``I20261122 ...``, glog >= 0.6) and without (``I1122 ...``) the year. Nothing here raises on
odd content: unreadable numbers become missing cells, odd lines are skipped.
"""
from __future__ import annotations

import csv
import ctypes
import datetime as _dt
import gc
import json
import math
import operator
import os
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

__all__ = ["Curves", "Table", "LogFollower", "parse_log", "write_outputs", "is_loss_metric", "BASE_COLUMNS"]

BASE_COLUMNS = ("NumIters", "Seconds", "LearningRate")
NAN = float("nan")
CHUNK = 1 << 20  # characters read per step: memory stays O(CHUNK + rows)

_OUT = re.compile(r"(Train|Test) net output #\d+: (\S+) = (\S+)")
_SCORE = re.compile(r"Test score #(\d+): (\S+)")
_TESTLOSS = re.compile(r"Test loss: (\S+)")
_NET = re.compile(r"Testing net \(#(\d+)\)")
_NO = " net output #"
# The fast path (see _Builder.fast). Each match starts at "Iteration " and is one of
#   a train block: "N, loss = X" [its first "Train net output" line (timestamp, name, value), further output
#                  lines]  (BVLC's "N (..), loss = X" too)
#   an lr head:    "N, lr = Y"
#   a test block:  "N, Testing net (#k)" and the glog lines after it that do not start an Iteration message.
# Text that no match needs is skipped by re's literal-prefix scan for "Iteration ", which is several times
# cheaper per character than consuming it with pattern steps: hence the lr line is its own match.
_FAST = re.compile(
    r"Iteration ([0-9]{1,18})(?: \([^)=\n]*\))?, (?:"
    r"loss = (\S+)\n"
    r"(?:([IWEF][0-9]{4}(?:[0-9]{4})? [0-9]{2}:[0-9]{2}:[0-9]{2})\.([0-9]{6}) [^\]\n]*\] +"
    r"Train net output #[0-9]+: (\S+) = (\S+)[^\n]*\n"
    r"((?:[^\]\n]*\] +Train net output #[^\n]*\n)*))?"
    r"|lr = ([^\s,]+)\n"
    r"|Testing net \(#([0-9]{1,9})\)\n((?:[^\]\n]*\] +(?!Iteration )[^\n]*\n)*))")
_LOSS, _SEC, _MORE, _BODY = (operator.itemgetter(i) for i in (1, 2, 6, 9))  # columns of a _FAST match
_LEADNUM = re.compile(r"\d+")
# Lines that end a run badly: a glog FATAL line (F + date), glog's failure handler, the shell.
_FATAL_MARKS = ("Check failed", "*** Aborted", "*** SIG", "*** Check failure", "Segmentation fault",
                "terminate called", "Aborted (core dumped)", "core dumped")


def _num(text: str) -> float | None:
    """A number as Caffe printed it; nan/-nan/inf (also MSVC's ``-nan(ind)``, ``1.#INF``) kept, junk -> None."""
    try:
        return float(text)
    except ValueError:
        low = text.strip().lower()
        if "nan" in low:
            return NAN
        if "inf" in low:
            return -math.inf if low.startswith("-") else math.inf
        return None


def is_loss_metric(name: str) -> bool:
    """Lower is better for losses and errors; higher is better for everything else (accuracy, top-k, mAP)."""
    low = name.lower()
    return "loss" in low or "error" in low or low.endswith("err")


# --------------------------------------------------------------------------------------------- tables
class Table:
    """Rows of one phase (train or test): ``columns`` in first-seen order, ``rows`` as dicts.

    A cell is a float (``nan``/``inf`` kept as such), or ``None`` where the log had no value for it.
    The columnar parser (:func:`_columnar`) hands over columns instead of rows: then ``rows`` is built on first
    access (and from then on is what the table holds, so that edits to it count), while ``column``, ``series``,
    ``to_csv`` and ``to_json`` read the columns directly, which is what makes a 1M-line log cheap to write out.
    """

    def __init__(self, columns: list[str] | None = None, rows: list[dict] | None = None):
        self.columns: list[str] = list(columns) if columns else list(BASE_COLUMNS)
        self._rows: list[dict] | None = rows if rows is not None else []
        self._frame = None  # a polars DataFrame (one column per name, null = no value) when built columnar
        self._native: _NativeTable | None = None  # the native scanner's columns (see _native_scan)

    @classmethod
    def _from_frame(cls, columns: list[str], frame) -> "Table":
        table = cls(columns)
        table._rows, table._frame = None, frame
        return table

    @classmethod
    def _from_native(cls, native: "_NativeTable") -> "Table":
        table = cls(native.columns)
        table._rows, table._native = None, native
        return table

    def __getstate__(self) -> dict:  # a pickled/deep-copied table holds rows, not the scanner's C memory
        if self._native is not None:
            self.rows  # noqa: B018 (materialise)
        return self.__dict__.copy()

    @property
    def rows(self) -> list[dict]:
        if self._rows is None and self._native is not None:  # native: rows on demand, as below
            native, self._native = self._native, None
            names = [c for c in self.columns if c in native.index]
            cols = [native.column(c) for c in names]
            self._rows = [{k: v for k, v in zip(names, vals) if v is not None} for vals in zip(*cols)]
        if self._rows is None:  # columnar: rows on demand, keys only for cells the log had
            frame, self._frame = self._frame, None
            names = [c for c in self.columns if c in frame.columns]
            cols = [frame[c].to_list() for c in names]
            self._rows = [{k: v for k, v in zip(names, vals) if v is not None} for vals in zip(*cols)]
        return self._rows

    @rows.setter
    def rows(self, rows: list[dict]) -> None:
        self._rows, self._frame, self._native = rows, None, None

    def __len__(self) -> int:
        if self._rows is None:
            return self._native.n if self._native is not None else self._frame.height
        return len(self._rows)

    def __repr__(self) -> str:
        return f"Table(columns={self.columns!r}, rows={len(self)})"

    def column(self, name: str) -> list:
        """One column as a list (``None`` where missing)."""
        if self._native is not None:
            return self._native.column(name) if name in self._native.index else [None] * len(self)
        if self._rows is None:
            return self._frame[name].to_list() if name in self._frame.columns else [None] * len(self)
        return [r.get(name) for r in self._rows]

    def metrics(self) -> list[str]:
        """The net-output columns (everything after NumIters/Seconds/LearningRate, minus Segment)."""
        return [c for c in self.columns if c not in BASE_COLUMNS and c != "Segment"]

    def series(self, name: str) -> list[tuple[int, float]]:
        """(iteration, value) pairs of one column, rows lacking it skipped; nan/inf kept."""
        if self._native is not None:
            if name not in self._native.index:
                return []
            return [(it, v) for it, v in zip(self._native.column("NumIters"), self._native.column(name))
                    if v is not None]
        if self._rows is None:
            if name not in self._frame.columns:
                return []
            part = self._frame.select("NumIters", name).drop_nulls(name)
            return list(zip(part["NumIters"].to_list(), part[name].to_list()))
        return [(r["NumIters"], r[name]) for r in self._rows if r.get(name) is not None]

    def _final_best(self, name: str) -> tuple[float | None, tuple[float, int] | None]:
        """The last value of a column and its best (:func:`_best`), from the columns when there are any."""
        if self._native is not None and self._native.index.get(name, (0, -1)) >= (1, 0):  # a net-output column
            return self._native.final_best(name, is_loss_metric(name))
        if self._rows is not None or self._native is not None or name not in self._frame.columns:
            ser = self.series(name)
            return (ser[-1][1] if ser else None), _best(ser, name)
        import polars as pl

        part = self._frame.select("NumIters", name).drop_nulls(name)
        if not part.height:
            return None, None
        last = part[name][-1]
        finite = part.filter(pl.col(name).is_finite())
        if not finite.height:
            return last, None
        target = finite[name].min() if is_loss_metric(name) else finite[name].max()
        at = finite.filter(pl.col(name) == target).row(0)  # the first row reaching it, as _best takes it
        return last, (at[1], at[0])

    def to_csv(self, path: str | Path) -> Path:
        """Write like ``parse_log.py``: header then one line per row; missing cells empty, nan as ``nan``.

        Numbers are written by polars (shortest text that reads back as the same float; ``0.00001`` where
        Python would write ``1e-05``); a table holding anything but numbers goes through the csv module."""
        path = Path(path)
        if self._native is not None and self.columns == self._native.columns:  # the C writer, from the log's text
            with path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)
            self._native.write(path, json=False)
            return path
        frame = self._number_frame()
        if frame is None:
            with path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(self.columns)
                for row in self.rows:
                    writer.writerow(["" if row.get(c) is None else row[c] for c in self.columns])
            return path
        with path.open("w", newline="") as fh:  # the header as csv.writer writes it (quoted where needed)
            csv.writer(fh).writerow(self.columns)
            if frame.height:  # numbers only below the header: "NaN" can only be a nan cell
                fh.write(frame.write_csv(include_header=False, line_terminator="\r\n", null_value="")
                         .replace("NaN", "nan"))
        return path

    def to_json(self) -> dict:
        """Strict JSON: nonfinite numbers as the strings ``"nan"``, ``"inf"``, ``"-inf"``; missing as null."""
        if self._rows is None or self._native is not None:
            cols = [self.column(c) for c in self.columns]
            return {"columns": list(self.columns), "rows": [[_json_num(v) for v in vals] for vals in zip(*cols)]}
        return {"columns": list(self.columns),
                "rows": [[_json_num(r.get(c)) for c in self.columns] for r in self._rows]}

    def _json_rows(self) -> str:
        """The ``rows`` of :meth:`to_json` as JSON text, one row a line (what ``write_outputs`` writes)."""
        frame = self._number_frame()
        if frame is None:
            return ",\n".join(json.dumps(r, allow_nan=False) for r in self.to_json()["rows"])
        if not frame.height:
            return ""
        text = frame.write_csv(include_header=False, line_terminator="],\n[", null_value="null")
        # numbers only: nonfinite cells as the strings to_json() uses ("-inf" first, then the plain "inf")
        text = text.replace("NaN", '"nan"').replace("-inf", "\0").replace("inf", '"inf"').replace("\0", '"-inf"')
        return "[" + text[:-3]  # without the last "],\n[" but its "]"

    def _number_frame(self):
        """The table as a polars DataFrame in ``columns`` order (absent columns all null), or None when a cell
        is not a number (a Table built by hand can hold anything)."""
        import polars as pl

        if self._native is not None:
            self.rows  # noqa: B018 (columns edited by hand: the rows are the table from here on)
        if self._rows is None:
            frame = self._frame
            return frame.select([pl.col(c) if c in frame.columns else pl.lit(None, pl.Float64).alias(c)
                                 for c in self.columns])
        series = []
        for c in self.columns:
            vals = [r.get(c) for r in self._rows]
            kinds = {type(v) for v in vals} - {type(None)}
            if kinds <= {int} and c in ("NumIters", "Segment"):
                series.append(pl.Series(c, vals, dtype=pl.Int64))
            elif kinds <= {float, int} and not any(type(v) is int and abs(v) > 2 ** 53 for v in vals):
                if int in kinds:  # an int cell would be written as float text: keep the csv module's text
                    return None
                series.append(pl.Series(c, vals, dtype=pl.Float64))
            else:
                return None
        return pl.DataFrame(series) if series else None


def _json_num(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    return v


@dataclass
class Curves:
    """What a log says: the two tables plus what the run looked like as a whole.

    ``segments`` counts the runs in the log (a resumed run adds one; rows then carry a ``Segment`` column);
    ``fatal_line`` is the first line that says Caffe died; ``truncated_tail`` the unterminated last line of a
    file, which is not parsed (glog ends every line with a newline, so it was cut mid-write).
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

    def train_loss(self) -> str | None:
        """The train column that holds the loss: ``loss`` if present, else the first column named like a loss."""
        return _pick_loss(self.train)

    def test_loss(self) -> str | None:
        return _pick_loss(self.test)

    def resolved(self) -> "Curves":
        """Curves with one row per iteration, sorted: for a resumed run the later row of an iteration wins."""
        out = Curves(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        out.train, out.test = _resolve(self.train), _resolve(self.test)
        return out

    def summary(self) -> dict:
        """Counts, last iteration, final and best test metrics: what ``caffegen parse`` prints."""
        final: dict[str, float] = {}
        best: dict[str, tuple[float, int]] = {}
        for name in self.test.metrics():
            last, b = self.test._final_best(name)
            if last is not None:
                final[name] = last
            if b is not None:
                best[name] = b
        return {"train_rows": len(self.train), "test_rows": len(self.test),
                "last_iteration": self.max_iter_seen, "segments": self.segments,
                "final_test": final, "best_test": best, "first_loss": self.first_loss,
                "last_loss": self.last_loss, "nonfinite": self.nonfinite, "fatal_line": self.fatal_line,
                "seconds": self.seconds}

    def to_json(self) -> dict:
        return {**self._json_head(), "train": self.train.to_json(), "test": self.test.to_json()}

    def _json_head(self) -> dict:
        s = self.summary()
        s["final_test"] = {k: _json_num(v) for k, v in s["final_test"].items()}
        s["best_test"] = {k: [_json_num(v), it] for k, (v, it) in s["best_test"].items()}
        s["first_loss"], s["last_loss"] = _json_num(s["first_loss"]), _json_num(s["last_loss"])
        return {"summary": s, "truncated_tail": self.truncated_tail}


def _pick_loss(table: Table) -> str | None:
    metrics = table.metrics()
    if "loss" in metrics:
        return "loss"
    return next((m for m in metrics if "loss" in m.lower()), None)


def _resolve(table: Table) -> Table:
    if "Segment" not in table.columns and all(
            a["NumIters"] < b["NumIters"] for a, b in zip(table.rows, table.rows[1:])):
        return table
    by_iter: dict[int, dict] = {}
    for row in table.rows:
        by_iter[row["NumIters"]] = {k: v for k, v in row.items() if k != "Segment"}
    cols = [c for c in table.columns if c != "Segment"]
    return Table(cols, [by_iter[k] for k in sorted(by_iter)])


def _best(series: list[tuple[int, float]], name: str) -> tuple[float, int] | None:
    """Best finite value and the first iteration it was reached (min for losses, max otherwise)."""
    finite = [(v, it) for it, v in series if v is not None and math.isfinite(v)]
    if not finite:
        return None
    if is_loss_metric(name):
        return min(finite, key=lambda p: p[0])
    best_v = max(v for v, _ in finite)
    return next((v, it) for v, it in finite if v == best_v)


# ------------------------------------------------------------------------------------- timestamps
class _Clock:
    """glog line prefixes -> seconds since the start, like parse_log.py: a year-less prefix takes the
    year of the log file, and the year goes up by one when the month goes down (Dec 31 -> Jan 1)."""

    def __init__(self, year: int):
        self.year = year
        self.last_month = 0
        self.start_us: int | None = None
        self.last_us: int | None = None  # set by the front ends from the last timestamped line
        self._minute: dict[str, int] = {}  # "I1122 09:34" -> microseconds at that minute: parse once per minute
        self._second: dict[str, int] = {}  # "I1122 09:34:16" -> microseconds at that second (fast path)

    def micros(self, prefix: str) -> int | None:
        """Microseconds (absolute) of a line that starts with a glog prefix; None for any other line."""
        try:
            sp = prefix.index(" ", 1)
            base = self._minute.get(prefix[:sp + 6])
            if base is None:
                if prefix[0] not in "IWEF":
                    return None
                base = self._new_minute(prefix, sp)
                if base is None:
                    return None
            if prefix[sp + 6] != ":" or prefix[sp + 9] != ".":
                return None
            digits = prefix[sp + 7:sp + 9] + prefix[sp + 10:sp + 16]
            if len(digits) != 8 or not (digits.isdecimal() and digits.isascii()):
                return None
            return base + int(digits)  # SS then 6 fraction digits: SSffffff is already microseconds
        except (ValueError, IndexError, OverflowError):
            return None

    def _new_minute(self, prefix: str, sp: int) -> int | None:
        date, hhmm = prefix[1:sp], prefix[sp + 1:sp + 6]
        if not (date.isdecimal() and date.isascii() and len(date) in (4, 8)):
            return None
        if len(hhmm) != 5 or hhmm[2] != ":" or not (hhmm[:2] + hhmm[3:]).isdecimal():
            return None
        if len(date) == 8:
            year, month, day = int(date[:4]), int(date[4:6]), int(date[6:])
        else:
            month, day = int(date[:2]), int(date[2:])
            if month < self.last_month:  # year roll-over, as parse_log.py does it
                self.year += 1
                self._minute.clear()
                self._second.clear()
            year = self.year
        try:
            when = _dt.datetime(year, month, day, int(hhmm[:2]), int(hhmm[3:]))
        except ValueError:
            return None
        if len(date) == 4:
            self.last_month = month
        base = (when.toordinal() * 86400 + when.hour * 3600 + when.minute * 60) * 1_000_000
        self._minute[prefix[:sp + 6]] = base
        return base

    def second(self, key: str) -> int | None:
        """Microseconds at the start of a validated ``I1122 09:34:16`` key; cached, so each second is parsed once."""
        us = self.micros(key + ".000000")
        if us is not None:
            self._second[key] = us
        return us

    def seconds(self, prefix: str) -> float:
        us = self.micros(prefix)
        if us is None:
            return NAN
        if self.start_us is None:
            self.start_us = us
        return (us - self.start_us) / 1e6

    @property
    def elapsed(self) -> float | None:
        if self.start_us is None or self.last_us is None:
            return None
        return (self.last_us - self.start_us) / 1e6


# ---------------------------------------------------------------------------------------- builder
class _Builder:
    """Turns what the two handlers find into rows and run state. Row rules follow ``parse_log.py``:

    * nothing counts before the first ``Iteration N`` line;
    * a train (test) row is opened by the first ``Train (Test) net output`` of an iteration; its Seconds come
      from that line's timestamp and its LearningRate is the last ``lr =`` printed before it;
    * outputs of test net ``#k`` (k > 0) get the column name ``NAME@netk``; old ``Test score #k`` lines the
      name ``score_k``; a ``Test loss: X`` line the name ``test_loss``;
    * the first row's unknown LearningRate is taken from the second row.
    """

    def __init__(self, year: int):
        self.clock = _Clock(year)
        self.iteration = -1
        self.max_iter = -1
        self.lr = NAN
        self.test_net = 0
        self.segment = 0
        self.started = False
        self.train_cols: dict[str, None] = dict.fromkeys(BASE_COLUMNS)
        self.test_cols: dict[str, None] = dict.fromkeys(BASE_COLUMNS)
        self.train_rows: list[dict] = []
        self.test_rows: list[dict] = []
        self.train_row: dict | None = None
        self.test_row: dict | None = None
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.nonfinite = False
        self.fatal_line: str | None = None
        self.loss_log: list[tuple[int, float]] = []
        self.loss_meta: list[tuple[str, float]] = []  # (prefix, lr) per loss_log entry, for old logs only

    # -- the head of an Iteration line: "N, loss = X" / "N (..), loss = X" / "N, lr = X" / "N, Testing net (#k)"
    def head(self, text: str, prefix: str) -> None:
        comma = text.find(",")
        num = text[:comma]
        if not (num.isdecimal() and num.isascii()):
            m = _LEADNUM.match(text)
            if m is None:
                return
            num = m.group()
        if len(num) > 18:  # not an iteration count (and int() would refuse 4300+ digits)
            return
        it = int(num)
        if it < self.iteration:  # iterations went back: a resumed run appended without its header
            self._next_segment()
        self.iteration = it
        self.started = True
        if it > self.max_iter:
            self.max_iter = it
        if "loss = " in text:
            v = _num(text.rpartition("loss = ")[2].strip())
            if v is not None:
                if self.first_loss is None:
                    self.first_loss = v
                self.last_loss = v
                if v != v or v in (math.inf, -math.inf):
                    self.nonfinite = True
                self.loss_log.append((it, v))
                self.loss_meta.append((prefix, self.lr))
        elif "lr = " in text:
            v = _num(text.partition("lr = ")[2].partition(",")[0].strip())
            if v is not None:
                self.lr = v
        elif "Testing net" in text:
            m = _NET.search(text)
            self.test_net = int(m.group(1)) if m else 0

    # -- one run of other lines (each line preceded by "\n"); ``rare`` when it may hold scores/fatal/Solving
    def tail(self, text: str, rare: bool) -> None:
        if rare:
            for line in text.split("\n"):
                if line:
                    self._rare_line(line)
            return
        if " net output #" in text and self.started:
            self._outputs(text)

    def _outputs(self, text: str) -> None:
        found = _OUT.findall(text)
        if not found:
            return
        pos = text.find(" net output #")
        self._apply_outputs(found, text[text.rfind("\n", 0, pos) + 1:pos])

    def _apply_outputs(self, found: list[tuple[str, str, str]], prefix: str) -> None:
        it = self.iteration
        for kind, name, val in found:
            v = _num(val)
            if kind == "Train":
                row = self.train_row
                if row is None or row["NumIters"] != it or row.get("Segment", 0) != self.segment:
                    row = self._open("train", prefix)
                if v is not None and v != v or v in (math.inf, -math.inf):
                    self.nonfinite = True
                if name not in self.train_cols:
                    self.train_cols[name] = None
            else:
                row = self.test_row
                if row is None or row["NumIters"] != it or row.get("Segment", 0) != self.segment:
                    row = self._open("test", prefix)
                if self.test_net:
                    name = f"{name}@net{self.test_net}"
                if name not in self.test_cols:
                    self.test_cols[name] = None
            row[name] = v
            prefix = ""  # later outputs of the same block share the row opened by the first

    def _next_segment(self) -> None:
        if self.train_rows or self.test_rows or self.train_row or self.test_row:
            self.segment += 1
        self.iteration = -1

    def _open(self, which: str, prefix: str) -> dict:
        row = {"NumIters": self.iteration, "Seconds": self.clock.seconds(prefix) if prefix else NAN,
               "LearningRate": self.lr}
        if self.segment:
            row["Segment"] = self.segment
        if which == "train":
            if self.train_row is not None:
                self.train_rows.append(self.train_row)
            self.train_row = row
        else:
            if self.test_row is not None:
                self.test_rows.append(self.test_row)
            self.test_row = row
        return row

    def _rare_line(self, line: str) -> None:
        """The slow path for one line: outputs, old test scores, Test loss, Solving, fatal lines."""
        if self.fatal_line is None and (line[0] == "F" and line[1:5].isdecimal() or
                                        any(mark in line for mark in _FATAL_MARKS)):
            self.fatal_line = line.strip()[:500]
        if "Solving " in line:
            us = self.clock.micros(line)
            if self.clock.start_us is None and us is not None:
                self.clock.start_us = us
            self._next_segment()
        if not self.started:
            return
        if " net output #" in line:
            self._outputs("\n" + line)
        elif "Test score #" in line:
            m = _SCORE.search(line)
            if m:
                self._test_value(f"score_{m.group(1)}", m.group(2), line[:line.find("Test score #")])
        elif "Test loss: " in line:
            m = _TESTLOSS.search(line)
            if m:
                self._test_value("test_loss", m.group(1), line[:line.find("Test loss: ")])

    def _test_value(self, name: str, val: str, prefix: str) -> None:
        row = self.test_row
        if row is None or row["NumIters"] != self.iteration or row.get("Segment", 0) != self.segment:
            row = self._open("test", prefix)
        if self.test_net:
            name = f"{name}@net{self.test_net}"
        if name not in self.test_cols:
            self.test_cols[name] = None
        row[name] = _num(val)

    # -- the fast path: a whole run of regular lines at once
    def fast(self, text: str) -> bool:
        """Apply ``text`` (whole lines, the first holding an ``Iteration`` head, no rare marker) in one go.

        One ``_FAST.findall`` (C speed) cuts it into train blocks (loss head and its outputs), lr heads and
        test blocks; ``_apply`` then does per match what ``head`` and ``_outputs`` would have done per line. Used only when every ``Iteration `` and every
        `` net output #`` of ``text`` lies inside a match (checked first, nothing changed before): then the
        lines between matches carry nothing the slow path reads, and the result is the same. Returns
        False (having changed nothing) when ``text`` is not that regular; the caller then takes the slow path.
        """
        found = _FAST.findall(text)
        if not found:
            return False
        if len(found) != text.count("Iteration "):
            return False
        secs = list(map(_SEC, found))
        opened = len(found) - secs.count("")  # train blocks: the first output of each is in the pattern
        outs = opened + "".join(map(_MORE, found)).count(_NO) + "".join(map(_BODY, found)).count(_NO)
        if outs != text.count(_NO):
            return False
        if self.train_row is None:  # loss lines before any train output keep their prefix (old logs): slow path
            for loss, sec in zip(map(_LOSS, found), secs):
                if sec:
                    break
                if loss:
                    return False
            else:
                return False
        self._apply(found)
        return True

    def _test_block(self, net: int, body: str) -> None:
        """The lines after ``Iteration N, Testing net (#net)``: ``_outputs`` inlined for test-only outputs."""
        self.test_net = net
        outs = _OUT.findall(body)
        if not outs or "Train net output #" in body:
            self._outputs("\n" + body)
            return
        row = self.test_row
        if row is None or row["NumIters"] != self.iteration or row.get("Segment", 0) != self.segment:
            pos = body.find(_NO)
            row = self._open("test", body[body.rfind("\n", 0, pos) + 1:pos])
        test_cols = self.test_cols
        for _kind, name, val in outs:
            try:
                v = float(val)
            except ValueError:
                v = _num(val)
            if net:
                name = f"{name}@net{net}"
            if name not in test_cols:
                test_cols[name] = None
            row[name] = v

    def _apply(self, found: list[tuple[str, ...]]) -> None:
        clock = self.clock
        seconds_at = clock._second
        train_cols, test_cols = self.train_cols, self.test_cols
        train_rows, test_rows = self.train_rows, self.test_rows
        loss_log = self.loss_log
        inf, ninf = math.inf, -math.inf
        iteration, max_iter, lr, segment = self.iteration, self.max_iter, self.lr, self.segment
        first_loss, last_loss, nonfinite = self.first_loss, self.last_loss, self.nonfinite
        train_row = self.train_row
        row_it = train_row["NumIters"] if train_row is not None else None
        row_seg = train_row.get("Segment", 0) if train_row is not None else None
        lr_text = it_text = None
        it = iteration
        for it_s, loss, sec, frac, name, val, more, lr1, net, body in found:
            if it_s != it_text:  # "Iteration N" repeats on consecutive lines (loss, lr, Testing): parse it once
                it = int(it_s)
                it_text = it_s
                if it < iteration and (train_rows or test_rows or train_row is not None or
                                       self.test_row is not None):
                    segment += 1
                iteration = it
                if it > max_iter:
                    max_iter = it
            if loss:
                try:
                    v = float(loss)
                except ValueError:
                    v = _num(loss)
                if v is not None:
                    if first_loss is None:
                        first_loss = v
                    last_loss = v
                    if v != v or v == inf or v == ninf:
                        nonfinite = True
                    loss_log.append((it, v))
                if not sec:
                    continue
                if it != row_it or segment != row_seg:  # open a train row, as _outputs does
                    us = seconds_at.get(sec)
                    if us is None:
                        us = clock.second(sec)
                    if us is None:
                        s = NAN
                    else:
                        us += int(frac)
                        if clock.start_us is None:
                            clock.start_us = us
                        s = (us - clock.start_us) / 1e6
                    if train_row is not None:
                        train_rows.append(train_row)
                    if segment:
                        train_row = {"NumIters": it, "Seconds": s, "LearningRate": lr, "Segment": segment}
                    else:
                        train_row = {"NumIters": it, "Seconds": s, "LearningRate": lr}
                    row_it, row_seg = it, segment
                if val != loss:  # Caffe prints the loss twice ("loss = X", "output #0: loss = X"): parse once
                    try:
                        v = float(val)
                    except ValueError:
                        v = _num(val)
                if v is not None and v != v or v == inf or v == ninf:
                    nonfinite = True
                if name not in train_cols:
                    train_cols[name] = None
                train_row[name] = v
                if more:  # further outputs of the block: the general code, state handed over and back
                    self.iteration, self.segment, self.lr, self.train_row = iteration, segment, lr, train_row
                    self.nonfinite = nonfinite
                    self._apply_outputs(_OUT.findall(more), "")
                    train_row, nonfinite = self.train_row, self.nonfinite
            elif lr1:
                if lr1 != lr_text:  # the same lr line after line: parse it when it changes
                    try:
                        lr = float(lr1)
                        lr_text = lr1
                    except ValueError:
                        v = _num(lr1)
                        if v is not None:
                            lr = v
            else:  # "Iteration N, Testing net (#k)" and the lines up to the next Iteration line
                if _NO not in body:
                    self.test_net = int(net)
                    continue
                self.iteration, self.segment, self.lr, self.train_row = iteration, segment, lr, train_row
                self.nonfinite = nonfinite
                self._test_block(int(net), body)
                train_row, nonfinite = self.train_row, self.nonfinite
                if train_row is not None:
                    row_it, row_seg = train_row["NumIters"], train_row.get("Segment", 0)
        self.iteration, self.max_iter, self.lr, self.segment = iteration, max_iter, lr, segment
        self.first_loss, self.last_loss, self.nonfinite = first_loss, last_loss, nonfinite
        self.train_row = train_row
        self.started = True

    # -- results
    def curves(self, truncated_tail: str | None = None) -> Curves:
        train_rows = self.train_rows + ([self.train_row] if self.train_row else [])
        test_rows = self.test_rows + ([self.test_row] if self.test_row else [])
        train_cols, test_cols = list(self.train_cols), list(self.test_cols)
        if not train_rows and self.loss_log:  # very old Caffe: no "Train net output", only "loss =" lines
            train_cols.append("loss")
            train_rows = [{"NumIters": it, "Seconds": self.clock.seconds(pre) if pre else NAN,
                           "LearningRate": lr, "loss": v}
                          for (it, v), (pre, lr) in zip(self.loss_log, self.loss_meta)]
        for rows in (train_rows, test_rows):
            if len(rows) > 1 and rows[0]["LearningRate"] != rows[0]["LearningRate"]:
                rows[0]["LearningRate"] = rows[1]["LearningRate"]
        if self.segment:
            train_cols.append("Segment")
            test_cols.append("Segment")
            for row in train_rows + test_rows:
                row.setdefault("Segment", 0)
        return Curves(train=Table(train_cols, train_rows), test=Table(test_cols, test_rows),
                      segments=self.segment + 1, fatal_line=self.fatal_line, truncated_tail=truncated_tail,
                      max_iter_seen=self.max_iter if self.max_iter >= 0 else None, seconds=self.clock.elapsed,
                      first_loss=self.first_loss, last_loss=self.last_loss, nonfinite=self.nonfinite,
                      loss_log=list(self.loss_log))


_RARE = ("Solving ", "Test score #", "Test loss: ", "\nF", "Check failed", "***", "fault", "terminate called",
         "core dumped")


def _has_rare(text: str) -> bool:
    return any(mark in text for mark in _RARE)


# ----------------------------------------------------------------------------------- front end 1
def _chunks_from_file(path: Path) -> Iterator[str]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return
            yield chunk


def _chunks_from_lines(lines: Iterable) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for item in lines:
        if isinstance(item, (bytes, bytearray)):
            item = bytes(item).decode("utf-8", "replace")
        elif not isinstance(item, str):
            item = str(item)
        if not item.endswith("\n"):
            item += "\n"  # an item is a whole line
        batch.append(item)
        size += len(item)
        if size >= CHUNK:
            yield "".join(batch)
            batch, size = [], 0
    if batch:
        yield "".join(batch)


def _run(builder: _Builder, chunks: Iterable[str]) -> str | None:
    """Feed chunks of log text to ``builder`` segment by segment; return an unterminated last line."""
    pending = ""  # text of the segment in progress; starts after "Iteration " (or at the start of the log)
    in_head = False  # does ``pending`` start with an unprocessed Iteration head?
    prev_prefix = ""  # start of the line holding the next "Iteration " (its glog prefix)
    end_text = ""  # the last 4 KB of the text: their last timestamp ends the run's wall time
    total = 0  # characters read
    misses = 0  # fast-path refusals in a row
    for n_chunk, chunk in enumerate(chunks):
        buf = pending + chunk
        end_text = (end_text + chunk)[-4096:]
        total += len(chunk)
        rare = _has_rare(buf)
        if in_head and not rare and (misses < 3 or n_chunk % 16 == 0):  # (a dialect it never fits: try less)
            p = buf.rfind("Iteration ")
            whole = prev_prefix + "Iteration " + buf[:p] if p >= 0 else ""
            nl = whole.rfind("\n")
            last = whole[nl + 1:]  # the last head's prefix: the slow path reads it as a tail, so keep it plain
            if nl >= 0 and "Iteration " not in last and _NO not in last and builder.fast(whole[:nl + 1]):
                prev_prefix, pending, misses = last, buf[p + 10:], 0
                continue
            misses += 1
        parts = buf.split("Iteration ")
        last = len(parts) - 1
        for i, seg in enumerate(parts):
            if i == last:
                break
            prev_prefix = _segment(builder, seg, in_head, rare, prev_prefix)
            in_head = True
        seg = parts[last]
        nl = seg.rfind("\n")
        if len(seg) > 2 * CHUNK and nl >= 0:  # a long stretch without "Iteration ": flush its whole lines
            _segment(builder, seg[:nl + 1], in_head, rare, prev_prefix)
            seg, in_head = seg[nl + 1:], False
            if len(seg) > 2 * CHUNK:  # one absurdly long line: not a Caffe line, drop it
                seg = ""
        pending = seg
    truncated = None
    if pending:
        nl = pending.rfind("\n")
        complete, rest = pending[:nl + 1], pending[nl + 1:]
        if complete:
            _segment(builder, complete, in_head, _has_rare(complete), prev_prefix)
        elif in_head:
            rest = "Iteration " + rest
        truncated = rest or None
    builder.clock.last_us = _end_micros(builder.clock, end_text, total <= 4096)
    return truncated


def _end_micros(clock: _Clock, end_text: str, whole: bool) -> int | None:
    """The time of the last whole timestamped line in ``end_text`` (the text's last 4 KB; ``whole`` when that is
    all of it, so that its first line is whole too): where the run's wall time ends. Independent of chunking."""
    lines = end_text.split("\n")[:-1]  # the piece after the last newline is no whole line
    for line in reversed(lines if whole else lines[1:]):
        us = clock.micros(line)
        if us is not None:
            return us
    return None


def _segment(builder: _Builder, seg: str, in_head: bool, rare: bool, prefix: str) -> str:
    """One segment: an Iteration head line (if ``in_head``) then other lines; returns its last partial line."""
    if in_head:
        nl = seg.find("\n")
        if nl < 0:  # "Iteration " twice on one line
            builder.head(seg, prefix)
            return prefix + "Iteration " + seg
        builder.head(seg[:nl], prefix)
        tail = seg[nl:]
    else:
        tail = "\n" + seg
    if len(tail) > 1:
        builder.tail(tail, rare)
    return tail[tail.rfind("\n") + 1:]


def _default_year(path: Path | None) -> int:
    """The year for year-less glog prefixes: the log file's, as parse_log.py takes it; else this year."""
    try:
        if path is not None:
            return _dt.datetime.fromtimestamp(os.path.getctime(path)).year
    except OSError:
        pass
    return _dt.date.today().year


def parse_log(source: str | Path | Iterable[str], *, year: int | None = None) -> Curves:
    """Parse a Caffe log (a path, or an iterable of lines) into :class:`Curves`. Streams (constant memory
    besides the rows); a file of 1 MB or more is first offered to the native scanner (which streams it too), and
    one of 4-128 MB, if that declines, is read whole by the columnar scanner. ``year`` is used for glog prefixes without one (default: the file's ctime year)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"no such log file: {path}")
        builder = _Builder(year or _default_year(path))
        try:
            size = path.stat().st_size
            if size >= NATIVE_MIN:  # big: the native scanner first (it streams the file)
                curves = _native_scan(path, builder.clock.year)
                if curves is not None:
                    return curves
            if COLUMNAR_MIN <= size <= COLUMNAR_MAX:  # then the columnar scanner (reads the file whole)
                curves = _columnar(path.read_bytes(), builder.clock.year)
                if curves is not None:
                    return curves
            truncated = _run_quiet(builder, _chunks_from_file(path))
        except OSError as exc:
            raise InputError(f"cannot read log {path}: {exc.strerror or exc}") from None
    else:
        builder = _Builder(year or _default_year(None))
        truncated = _run_quiet(builder, _chunks_from_lines(source))
    return builder.curves(truncated)


def _run_quiet(builder: _Builder, chunks: Iterable[str]) -> str | None:
    """``_run`` with the cyclic garbage collector paused: the parse allocates millions of small acyclic objects
    (rows, match tuples) that survive, so CPython would otherwise rescan the growing heap over and over
    (about a fifth of the run time on a 1M-line log). Restored afterwards, also on error."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(builder, chunks)
    finally:
        if was_enabled:
            gc.enable()


def write_outputs(curves: Curves, log_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``LOG.train``, ``LOG.test`` (CSV, parse_log.py naming) and ``LOG.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(log_path).name
    js = out / f"{base}.json"
    written = [curves.train.to_csv(out / f"{base}.train"), curves.test.to_csv(out / f"{base}.test")]
    _write_json(curves, js)
    return written + [js]


# ------------------------------------------------------------ shared by the native and columnar scanners
def _plain_cut_line(partial: str) -> bool:
    """The unterminated last line is one the scanners may leave to :func:`_truncated_tail`: no fatal or rare
    marker, no output, at most one head (the per-line path reads every head of a cut line but its last)."""
    return not (partial.startswith("F") or _NO in partial or any(m in partial for m in _RARE_LINE)
                or partial.count("Iteration ") > 1)


def _truncated_tail(partial: str) -> str | None:
    """``Curves.truncated_tail`` of a log whose unterminated last line is ``partial`` (a plain cut line)."""
    after = partial.rpartition("Iteration ")
    return (("Iteration " + after[2]) if after[2] else None) if after[1] else (partial or None)


# --------------------------------------------------------------------------------- the native path
NATIVE_MIN = 1 << 20  # bytes: a log file this big is first offered to the native scanner (caffegen/native)
_PARTIAL_BAD = ("\r", "\0")


def _native_scan(path: Path, year: int) -> Curves | None:
    """The whole log in one pass of ``caffegen/native/logscan.c``: the curves, or None when the library cannot
    be had or the scanner declines (anything it does not model exactly; see the comment atop logscan.c). C
    reads the file in 256 KB blocks (memory: one block plus the cells, not the file). The tables stay in C
    memory: ``Table`` reads columns from them on demand and ``write_outputs`` has C write the rows, from each
    number's own text in the log."""
    from . import native

    lib = native.load()
    if lib is None:
        return None
    scan = _Scan(lib)
    pos = (ctypes.c_int64 * 2)()
    if lib.ls_scan_file(scan.ctx, os.fsencode(path), year, CHUNK, pos) != 0:
        return None
    total, whole_end = pos
    start = max(0, min(whole_end, total - 4096))
    with path.open("rb") as fh:  # the unterminated last line and the last 4 KB, as the scan read them
        fh.seek(start)
        tail = fh.read(total - start)
    if len(tail) != total - start or not tail.isascii():
        return None
    partial = tail[whole_end - start:].decode()
    if not _plain_cut_line(partial) or any(b in partial for b in _PARTIAL_BAD):
        return None
    info, dinfo = (ctypes.c_int64 * 11)(), (ctypes.c_double * 2)()
    lib.ls_info(scan.ctx, info, dinfo)
    n_train, n_test, nc_train, nc_test, segment, max_iter, has_start, start_us, max_month, nonfinite, nloss = info
    clock = _Clock(year)
    clock.last_month = max_month
    clock.start_us = start_us if has_start else None
    clock.last_us = _end_micros(clock, tail[-4096:].decode(), total <= 4096)
    if clock.year != year:  # the last lines went back a month: a year roll-over is the per-line path's business
        return None
    its, vals = array("q", bytes(8 * nloss)), array("d", bytes(8 * nloss))
    if nloss:
        lib.ls_loss(scan.ctx, (ctypes.c_int64 * nloss).from_buffer(its), (ctypes.c_double * nloss).from_buffer(vals))
    tables = []
    for t, (n, ncols) in enumerate(((n_train, nc_train), (n_test, nc_test))):
        outs = [lib.ls_colname(scan.ctx, t, k).decode() for k in range(ncols)]
        tables.append(Table._from_native(_NativeTable(scan, t, n, outs, segment > 0)))
    truncated = _truncated_tail(partial)
    return Curves(train=tables[0], test=tables[1], segments=segment + 1, fatal_line=None, truncated_tail=truncated,
                  max_iter_seen=max_iter, seconds=clock.elapsed,
                  first_loss=dinfo[0] if nloss else None, last_loss=dinfo[1] if nloss else None,
                  nonfinite=bool(nonfinite), loss_log=_Pairs(its, vals))


class _Scan:
    """One native scan's C memory (freed with the last table that reads it)."""

    def __init__(self, lib):
        self.lib, self.ctx = lib, lib.ls_new()
        if not self.ctx:
            raise MemoryError("native log scanner")

    def __del__(self):
        ctx, self.ctx = getattr(self, "ctx", None), None
        if ctx:
            self.lib.ls_free(ctx)


class _NativeTable:
    """One table of a :class:`_Scan`: its column names, and each column read out of C on demand."""

    def __init__(self, scan: _Scan, t: int, n: int, outs: list[str], segment: bool):
        self.scan, self.t, self.n = scan, t, n
        self.columns = list(BASE_COLUMNS) + outs + (["Segment"] if segment else [])
        # name -> (0 int / 1 float, index for ls_fetch_*): NumIters 0, Segment 1; Seconds -2, LearningRate -1
        self.index = {"NumIters": (0, 0), "Seconds": (1, -2), "LearningRate": (1, -1),
                      **{name: (1, k) for k, name in enumerate(outs)}}
        if segment:
            self.index["Segment"] = (0, 1)

    def column(self, name: str) -> list:
        kind, k = self.index[name]
        n, lib, ctx = self.n, self.scan.lib, self.scan.ctx
        if not n:
            return []
        if kind == 0:
            out = array("q", bytes(8 * n))
            lib.ls_fetch_int(ctx, self.t, k, (ctypes.c_int64 * n).from_buffer(out))
            return out.tolist()
        vals, present = array("d", bytes(8 * n)), bytearray(n)
        lib.ls_fetch_float(ctx, self.t, k, (ctypes.c_double * n).from_buffer(vals),
                           (ctypes.c_uint8 * n).from_buffer(present))
        if present.count(0) == 0:
            return vals.tolist()
        return [v if p else None for v, p in zip(vals.tolist(), present)]

    def final_best(self, name: str, lower: bool) -> tuple[float | None, tuple[float, int] | None]:
        flags, vals, at = (ctypes.c_int64 * 2)(), (ctypes.c_double * 2)(), ctypes.c_int64()
        self.scan.lib.ls_final_best(self.scan.ctx, self.t, self.index[name][1], int(lower), flags, vals,
                                    ctypes.byref(at))
        return (vals[0] if flags[0] else None), ((vals[1], at.value) if flags[1] else None)

    def write(self, path: Path, json: bool) -> None:
        """Append the rows to ``path``: CSV lines, or JSON arrays one a line."""
        rc = self.scan.lib.ls_write(self.scan.ctx, self.t, int(json), os.fsencode(path))
        if rc:
            raise OSError(f"cannot write {path} (native writer: {rc})")


# ------------------------------------------------------------------------------- the columnar path
COLUMNAR_MIN = 4 << 20  # bytes: a log file this big is first offered to the columnar scanner (a fixed cost)
COLUMNAR_MAX = 128 << 20  # bytes: bigger is streamed (the scanner peaks at ~8x the file size in memory)
_ODD_BYTES = (b"\r", b"\x01")  # universal newlines would split the line; the line reader's field separator
_RARE_LINE = ["Solving ", "Test score #", "Test loss: ", "Check failed", "***", "fault", "terminate called",
              "core dumped"]
_DIGITS = "0123456789"
# a rare line: a rare marker, a glog FATAL line (F...), or whitespace that Python's \s and .strip() treat
# differently from the scanner (three separate scans: a literal-only regex keeps its fast multi-literal search)
_RARE_RX = "|".join(re.escape(m) for m in _RARE_LINE)
_ODD_WS = r"[\t\x0b\x0c\x1c-\x1f]"


class _Irregular(Exception):
    """The log is not regular enough for the columnar scanner: the per-line path reads it."""


def _need(ok) -> None:
    if not ok:
        raise _Irregular


def _columnar(raw: bytes, year: int) -> Curves | None:
    """The whole log at once, in polars' compiled string kernels: the curves, or None (the caller then takes
    the per-line path) when the log holds anything the scanner does not model exactly.

    What it models is what the per-line handlers do on regular lines; every assumption is checked first
    (ASCII text, one marker per line, numbers that polars and Python read alike, no year roll-over, no rare
    line but ``Solving``), and a failed check means None, never a guess. ``tests/test_parse.py`` compares the
    two paths on every fixture and on mutated logs."""
    try:
        return _scan_columns(raw, year)
    except _Irregular:
        return None


def _scan_columns(raw: bytes, year: int) -> Curves:
    import numpy as np
    import polars as pl

    _need(raw.isascii() and not any(b in raw for b in _ODD_BYTES))
    nl = raw.rfind(b"\n")
    _need(nl >= 0)
    partial = raw[nl + 1:].decode()
    _need(_plain_cut_line(partial))
    lines = pl.read_csv(raw[:nl + 1], has_header=False, separator="\x01", quote_char=None,
                        schema={"l": pl.String}, raise_if_empty=False)
    l = pl.col("l")
    rel = (lines.lazy().with_row_index("i")
           .with_columns(pit=l.str.find("Iteration ", literal=True), pout=l.str.find(_NO, literal=True),
                         rare=(l.str.contains(_RARE_RX) | l.str.starts_with("F") | l.str.contains(_ODD_WS))
                         .fill_null(False), longest=l.str.len_bytes().max())
           .collect())
    # no line as long as a chunk (the per-line path drops such a line, and cuts the text around it)
    _need(rel.height and (rel["longest"][0] or 0) < CHUNK and len(partial) < CHUNK)

    solving: list[tuple[int, str]] = []
    rare = rel.select("i", "l", "pit", "pout", "rare").filter(pl.col("rare")).head(10001).drop("rare")
    for i, text, pit, pout in rare.iter_rows():
        _need(pit is None and pout is None and "Test score #" not in text and "Test loss: " not in text)
        _need("Solving " not in text or not any(c in text for c in "\t\x0b\x0c\x1c\x1d\x1e\x1f"))
        _need(not (text[0] == "F" and text[1:5].isdecimal() or any(m in text for m in _FATAL_MARKS)))
        if "Solving " in text:
            solving.append((i, text))
    _need(rel["rare"].sum() <= 10000)

    # -- Iteration heads: N, then loss = X | lr = X | Testing net (#k) | anything else
    ht = pl.col("ht")
    heads = (rel.lazy().filter(pl.col("pit").is_not_null())
             .select("i", "pout", ht=l.str.slice(pl.col("pit") + 10))
             .with_columns(n=ht.str.len_bytes(), rest=ht.str.strip_chars_start(_DIGITS).str.len_bytes(),
                           again=ht.str.contains("Iteration ", literal=True),
                           ploss=ht.str.find("loss = ", literal=True), plr=ht.str.find("lr = ", literal=True),
                           ptn=ht.str.find("Testing net", literal=True))
             .with_columns(nd=pl.col("n") - pl.col("rest"),
                           vt=ht.str.slice(pl.when(pl.col("ploss").is_not_null()).then(pl.col("ploss") + 7)
                                           .otherwise(pl.col("plr") + 5)))
             .with_columns(it=ht.str.slice(0, pl.col("nd")).cast(pl.Int64, strict=False),
                           val=pl.col("vt").cast(pl.Float64, strict=False)))
    # -- outputs: "(Train|Test) net output #k: NAME = VALUE", one a line (those before the first head are dropped)
    r = pl.col("r")
    outs = (rel.lazy().filter(pl.col("pout").is_not_null())
            .select("i", "l", "pout", k5=l.str.slice(pl.col("pout") - 5, 5), r=l.str.slice(pl.col("pout") + 13))
            .with_columns(again=r.str.contains(_NO, literal=True), f=r.str.split_exact(" ", 3))
            .unnest("f")
            .with_columns(f0=pl.col("field_0").str.strip_chars_start(_DIGITS) == ":",
                          n0=pl.col("field_0").str.len_bytes(), val=pl.col("field_3").cast(pl.Float64, strict=False),
                          train=pl.col("k5") == "Train", test=pl.col("k5").str.ends_with("Test")))
    heads, outs = pl.collect_all([heads, outs])  # two independent scans: polars runs them side by side
    is_loss = heads["ploss"].is_not_null()
    is_lr = ~is_loss & heads["plr"].is_not_null()
    is_tn = ~is_loss & ~is_lr & heads["ptn"].is_not_null()
    # (a head of digits only is read by the per-line path without its last digit: no comma to stop at)
    _need(heads.height > 0 and heads["pout"].null_count() == heads.height and not heads["again"].any())
    _need(heads["nd"].min() >= 1 and heads["nd"].max() <= 18 and (heads["rest"] > 0).all())
    odd = (is_loss | is_lr) & heads["val"].is_null()
    if odd.any():  # "lr = X, m = ..." (NVCaffe), spaces around a number: the exact rule on these few heads
        fix = (heads.lazy().filter(odd).select("i", vt=pl.col("vt"))
               .with_columns(vc=pl.col("vt").str.find(",", literal=True))
               .with_columns(val=pl.when(pl.col("vc").is_null()).then(pl.col("vt"))
                             .otherwise(pl.col("vt").str.slice(0, pl.col("vc")))
                             .str.strip_chars(" ").cast(pl.Float64, strict=False))
               .collect())
        _need(fix["val"].null_count() == 0 and not (is_loss.filter(odd) & fix["vc"].is_not_null()).any())
        heads = heads.with_columns(val=heads["val"].scatter(odd.arg_true(), fix["val"]))
    tn = (heads.lazy().filter(is_tn).select("i", tt=ht.str.slice(pl.col("ptn")))
          .with_columns(ok=pl.col("tt").str.starts_with("Testing net (#"), r=pl.col("tt").str.slice(14))
          .with_columns(nd=pl.col("r").str.len_bytes() - pl.col("r").str.strip_chars_start(_DIGITS).str.len_bytes())
          .with_columns(close=pl.col("r").str.slice(pl.col("nd"), 1), net=pl.col("r").str.slice(0, pl.col("nd"))
                        .cast(pl.Int64, strict=False))
          .collect())
    if tn.height:
        _need(tn["ok"].all() and tn["nd"].min() >= 1 and tn["nd"].max() <= 9 and (tn["close"] == ")").all())
    h_i, h_it = heads["i"].to_numpy(), heads["it"].to_numpy()
    loss_h = heads.select("it", "val").filter(is_loss)
    loss_it, loss_v = loss_h["it"].to_numpy(), loss_h["val"].to_numpy()
    lr_h = heads.select("i", "val").filter(is_lr)
    lr_i, lr_v = lr_h["i"].to_numpy(), lr_h["val"].to_numpy()
    tn_i, tn_net = tn["i"].to_numpy(), tn["net"].to_numpy()

    if outs.height and outs["i"][0] < h_i[0]:
        outs = outs.filter(pl.col("i") > int(h_i[0]))
    if outs.height:
        _need(outs["pout"].min() >= 5 and not outs["again"].any() and outs["f0"].all() and outs["n0"].min() >= 2)
        _need((outs["field_2"] == "=").all() and outs["field_1"].null_count() == 0 and (outs["field_1"] != "").all())
        _need(outs["val"].null_count() == 0 and (outs["train"] | outs["test"]).all())
    o_i = outs["i"].to_numpy()
    o_train = outs["train"].to_numpy()
    o_val = outs["val"].to_numpy()

    # -- the state machine, vectorised: iteration, segment, lr and test net in force at each output line
    s_i = np.array([i for i, _ in solving], dtype=np.int64)
    ev_i = np.concatenate([h_i.astype(np.int64), s_i])
    ev_it = np.concatenate([h_it, np.full(len(s_i), -1, dtype=np.int64)])
    ev_head = np.concatenate([np.ones(len(h_i), bool), np.zeros(len(s_i), bool)])
    order = np.argsort(ev_i, kind="stable")
    ev_i, ev_it, ev_head = ev_i[order], ev_it[order], ev_head[order]
    first_out = o_i[0] if len(o_i) else np.iinfo(np.int64).max
    prev = np.concatenate([[-1], ev_it[:-1]])
    rows_before = ev_i > first_out  # a row exists once the first output was applied
    ev_seg = np.cumsum(np.where(ev_head, (ev_it < prev) & rows_before, rows_before))
    segment = int(ev_seg[-1]) if len(ev_seg) else 0
    k = np.searchsorted(ev_i, o_i) - 1
    o_it, o_seg = ev_it[k], ev_seg[k]
    j = np.searchsorted(lr_i, o_i) - 1
    o_lr = np.where(j >= 0, lr_v[np.maximum(j, 0)] if len(lr_v) else NAN, NAN)
    j = np.searchsorted(tn_i, o_i) - 1
    o_net = np.where(j >= 0, tn_net[np.maximum(j, 0)] if len(tn_net) else 0, 0)
    tail = np.searchsorted(ev_i, o_i)  # outputs between the same two heads (or Solving lines): one "tail"
    first = np.concatenate([[True], tail[1:] != tail[:-1]]) if len(tail) else np.zeros(0, bool)
    _need(not (~first & (o_train != np.concatenate([[False], o_train[:-1]]))).any())  # one kind per tail
    opener = np.zeros(len(o_i), bool)
    for kind in (True, False):
        sel = np.flatnonzero(first & (o_train == kind))
        key_it, key_seg = o_it[sel], o_seg[sel]
        opener[sel] = np.concatenate([[True], (key_it[1:] != key_it[:-1]) | (key_seg[1:] != key_seg[:-1])])[:len(sel)]

    # -- Seconds of the opening lines: one minute key per line, each distinct key parsed by the real _Clock
    clock = _Clock(year)
    op = outs.select("i", "l", "pout").filter(pl.Series(opener))
    seconds = np.zeros(0)
    if op.height:
        first_line = op["l"][0]
        sp = first_line.find(" ", 1)
        _need(sp in (5, 9))
        frac = pl.col("frac")  # ":SS.ffffff": only these characters, ":" and "." in place, and a number
        stamp = (op.lazy().select("i", "l", "pout", key=l.str.slice(0, sp + 6), frac=l.str.slice(sp + 6, 10))
                 .with_columns(ok=(frac.str.strip_chars(":.0123456789") == "") & (frac.str.slice(0, 1) == ":")
                               & (frac.str.slice(3, 1) == "."),
                               sec=frac.str.slice(1).cast(pl.Float64, strict=False))
                 .collect())
        _need(stamp["ok"].all() and stamp["sec"].null_count() == 0 and stamp["pout"].min() >= sp + 16)
        firsts = (stamp.unique(subset="key", keep="first", maintain_order=True)
                  .select("i", "key", pre=l.str.slice(0, pl.col("pout"))).rows())
        _need(len(firsts) <= 200_000)
        events = sorted([(i, 0, text) for i, text in solving] + [(i, 1, pre) for i, _, pre in firsts])
        for _i, is_row, text in events:
            if is_row:
                _need(text.find(" ", 1) == sp)
                _need(not math.isnan(clock.seconds(text)))
            else:
                us = clock.micros(text)
                if clock.start_us is None and us is not None:
                    clock.start_us = us
        _need(clock.year == year)  # a year roll-over re-parses minutes: the per-line path's business
        keys = [key for _, key, _ in firsts]
        base = stamp["key"].replace_strict(keys, [clock._minute[key] for key in keys], return_dtype=pl.Int64)
        us = base.to_numpy() + np.round(stamp["sec"].to_numpy() * 1e6).astype(np.int64)
        seconds = (us - clock.start_us) / 1e6
    else:
        for _i, text in solving:
            us = clock.micros(text)
            if clock.start_us is None and us is not None:
                clock.start_us = us
    _need(o_train.any() or not len(loss_v))  # loss lines without train outputs (very old Caffe): per-line path

    # -- the tables: one row per opening line, cells from every output line of that row (the last one wins)
    names = outs["field_1"]
    uniq = names.unique(maintain_order=True)
    code = names.replace_strict(uniq, np.arange(len(uniq)), return_dtype=pl.Int64).to_numpy()
    uniq = uniq.to_list()
    nonfinite = bool((~np.isfinite(loss_v)).any() or (~np.isfinite(o_val[o_train])).any())
    sec_full = np.full(len(o_i), NAN)
    sec_full[opener] = seconds
    tables = []
    for kind in (True, False):
        sel = np.flatnonzero(o_train == kind)
        opens = opener[sel]
        row = np.cumsum(opens) - 1
        n = int(opens.sum())
        at = sel[opens]
        lr = o_lr[at].astype(np.float64)
        if n > 1 and lr[0] != lr[0]:
            lr[0] = lr[1]
        cols = {"NumIters": pl.Series(o_it[at], dtype=pl.Int64),
                "Seconds": pl.Series(sec_full[at], dtype=pl.Float64),
                "LearningRate": pl.Series(lr, dtype=pl.Float64)}
        net = o_net[sel] if not kind else np.zeros(len(sel), np.int64)
        key = code[sel] * (1 << 31) + net
        _, first_at = np.unique(key, return_index=True)
        for f in np.sort(first_at):
            kk = key[f]
            name = uniq[int(code[sel][f])] + (f"@net{int(net[f])}" if net[f] else "")
            m = np.flatnonzero(key == kk)
            rows, vals = row[m], o_val[sel][m]
            last = np.concatenate([rows[1:] != rows[:-1], [True]])
            values, present = np.zeros(n), np.zeros(n, bool)
            values[rows[last]], present[rows[last]] = vals[last], True
            cols[name] = pl.select(pl.when(pl.Series(present)).then(pl.Series(values))).to_series()
        if segment:
            cols["Segment"] = pl.Series(o_seg[at], dtype=pl.Int64)
        frame = pl.DataFrame([s.alias(c) for c, s in cols.items()])
        tables.append(Table._from_frame(list(cols), frame))

    clock.last_us = _end_micros(clock, raw[-4096:].decode(), len(raw) <= 4096)
    truncated = _truncated_tail(partial)
    return Curves(train=tables[0], test=tables[1], segments=segment + 1, fatal_line=None, truncated_tail=truncated,
                  max_iter_seen=int(h_it.max()), seconds=clock.elapsed,
                  first_loss=float(loss_v[0]) if len(loss_v) else None,
                  last_loss=float(loss_v[-1]) if len(loss_v) else None, nonfinite=nonfinite,
                  loss_log=_Pairs(loss_it, loss_v))


class _Pairs(Sequence):
    """``Curves.loss_log`` of the columnar path: (iteration, loss) tuples made on access from two arrays (a
    1M-line log has a quarter million of them, and most callers never look)."""

    def __init__(self, its, vals):
        self._its, self._vals = its, vals

    def __len__(self) -> int:
        return len(self._its)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return list(zip(self._its[k].tolist(), self._vals[k].tolist()))
        return int(self._its[k]), float(self._vals[k])

    def __iter__(self):
        return zip(self._its.tolist(), self._vals.tolist())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


def _json_text(curves: Curves) -> str:
    """``curves.to_json()`` as JSON text, each table row on one line: the same document, written by polars
    column-wise instead of by ``json.dumps`` cell by cell (seconds for a 1M-line log)."""
    head = json.dumps(curves._json_head(), indent=1, allow_nan=False)
    parts = [head[:-2]]  # without the closing "\n}"
    for name, table in (("train", curves.train), ("test", curves.test)):
        rows = table._json_rows()
        parts.append(f',\n "{name}": {{\n  "columns": {json.dumps(table.columns)},\n  "rows": [\n'
                     + rows + ("\n" if rows else "") + "  ]\n }")
    return "".join(parts) + "\n}\n"


def _write_json(curves: Curves, path: Path) -> None:
    """Write :func:`_json_text` to ``path``; the rows of native tables are appended by the C writer."""
    if not any(t._native is not None and t.columns == t._native.columns for t in (curves.train, curves.test)):
        path.write_text(_json_text(curves))
        return
    head = json.dumps(curves._json_head(), indent=1, allow_nan=False)
    pending, mode = head[:-2], "w"  # without the closing "\n}"
    for name, table in (("train", curves.train), ("test", curves.test)):
        pending += f',\n "{name}": {{\n  "columns": {json.dumps(table.columns)},\n  "rows": [\n'
        if table._native is not None and table.columns == table._native.columns:
            with path.open(mode) as fh:
                fh.write(pending)
            mode = "a"
            table._native.write(path, json=True)  # one row a line, the last with its newline
            pending = "  ]\n }"
        else:
            rows = table._json_rows()
            pending += rows + ("\n" if rows else "") + "  ]\n }"
    with path.open(mode) as fh:
        fh.write(pending + "\n}\n")


# ----------------------------------------------------------------------------------- front end 2
class LogFollower:
    """Follow a log as it is written, one line at a time (the sweep driver's live view of a run).

    Same handlers as :func:`parse_log`; :meth:`curves` gives the rows so far.
    """

    def __init__(self, year: int | None = None):
        self._b = _Builder(year or _dt.date.today().year)
        self._last_stamp = ""
        self._seen_loss: float | None = None
        self.loss_history: list[tuple[int, float]] = []  # (N, X) of every ``Iteration N, loss = X`` line
        self.peak_loss: float | None = None              # the largest finite X so far (a cheap divergence gate)

    def feed(self, line: str) -> None:
        """Take one line (with or without its newline). Never raises on odd text."""
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("utf-8", "replace")
        for piece in line.split("\n"):
            self._feed_one(piece)

    def _feed_one(self, line: str) -> None:
        if not line:
            return
        b = self._b
        if line[0] in "IWEF" and line[1:5].isdecimal():
            self._last_stamp = line[:40]
        parts = line.split("Iteration ")
        text = "\n" + parts[0]
        prefix = parts[0]
        if len(text) > 1:
            b.tail(text, _has_rare(text))
        for seg in parts[1:]:
            b.head(seg, prefix)
            prefix = prefix + "Iteration " + seg
            if b.last_loss is not self._seen_loss:   # a new loss line (each value is a new float object)
                loss = self._seen_loss = b.last_loss
                self.loss_history.append((b.iteration, loss))
                if math.isfinite(loss) and (self.peak_loss is None or loss > self.peak_loss):
                    self.peak_loss = loss

    def curves(self) -> Curves:
        """The rows parsed so far (the row being filled included)."""
        return self._b.curves()

    @property
    def iteration(self) -> int | None:
        """The last ``Iteration N`` seen."""
        return self._b.iteration if self._b.iteration >= 0 else None

    @property
    def max_iter_seen(self) -> int | None:
        return self._b.max_iter if self._b.max_iter >= 0 else None

    @property
    def first_loss(self) -> float | None:
        """The first ``Iteration N, loss = X`` value (Caffe's smoothed loss)."""
        return self._b.first_loss

    @property
    def last_loss(self) -> float | None:
        return self._b.last_loss

    @property
    def last_lr(self) -> float | None:
        lr = self._b.lr
        return None if lr != lr else lr

    @property
    def last_test(self) -> dict[str, float]:
        """Metrics of the latest test pass (the one in progress included)."""
        b = self._b
        row = b.test_row or (b.test_rows[-1] if b.test_rows else None)
        if row is None:
            return {}
        return {k: v for k, v in row.items() if k not in BASE_COLUMNS and k != "Segment" and v is not None}

    def test_history(self, metric: str) -> list[tuple[int, float]]:
        """(iteration, value) of one test metric, in log order."""
        b = self._b
        rows = b.test_rows + ([b.test_row] if b.test_row else [])
        return [(r["NumIters"], r[metric]) for r in rows if r.get(metric) is not None]

    def best_test(self, metric: str) -> tuple[float, int] | None:
        """(best value, iteration): max for accuracy-like metrics, min for losses; None before any finite value."""
        return _best(self.test_history(metric), metric)

    @property
    def nonfinite(self) -> bool:
        """True once the train loss (or any train output) was nan or inf: the run diverged."""
        return self._b.nonfinite

    @property
    def fatal_line(self) -> str | None:
        """The first line that says Caffe died (glog ``F...``, ``Check failed``, ``*** Aborted``, segfault)."""
        return self._b.fatal_line

    @property
    def seconds(self) -> float | None:
        """Seconds from the ``Solving`` line (or the first timestamp) to the last timestamped line."""
        if self._last_stamp:
            clock = self._b.clock
            us = clock.micros(self._last_stamp)
            if us is not None:
                clock.last_us = us
                if clock.start_us is None:
                    clock.start_us = us
        return self._b.clock.elapsed

