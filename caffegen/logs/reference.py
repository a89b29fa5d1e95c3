"""The reference parser: Caffe training log text -> :class:`~caffegen.logs.curves.Curves`, line by line.

It reads every dialect caffegen knows and never raises on odd content (unreadable numbers become missing cells,
odd lines are skipped); the native scanner (:mod:`caffegen.logs.native`) is tested against it and hands it every
log it does not model exactly. :class:`caffegen.logs.follower.LogFollower` feeds the same :class:`Builder` one
line at a time, through the same two text handlers (``head`` for the text after ``Iteration `` and ``tail`` for
every other line), so the live view and the whole-file parse cannot drift apart.

Why the text is split on ``"Iteration "``: in every Caffe dialect the lines that matter follow an
``Iteration N, ...`` line (train outputs after ``loss =``, test outputs after ``Testing net``), and
``str.split`` runs at C speed, so the Python code runs per logged iteration and per output line, not per byte.

Row rules follow ``parse_log.py`` (see :class:`Builder`). Dialects read: BVLC ``Iteration N (x iter/s, ys/N
iters), loss = X``; this project's Caffe ``Iteration N, loss = X`` / ``Iteration N, lr = X``; NVCaffe ``Iteration N
(x iter/s, ...), 1.2/9ep, loss = X`` and ``Iteration N, lr = X, m = M, wd = W, gs = G``; old ``Test score #k: X``;
glog prefixes with (``I20261122 ...``, glog >= 0.6) and without (``I1122 ...``) the year.
"""
from __future__ import annotations

import datetime as _dt
import gc
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .curves import BASE_COLUMNS, NAN, Curves, Table

__all__ = ["Builder", "Clock", "parse_lines", "parse_file", "default_year"]

CHUNK = 1 << 20  # characters read per step: memory stays O(CHUNK + rows)

_OUT = re.compile(r"(Train|Test) net output #\d+: (\S+) = (\S+)")
_SCORE = re.compile(r"Test score #(\d+): (\S+)")
_TESTLOSS = re.compile(r"Test loss: (\S+)")
_NET = re.compile(r"Testing net \(#(\d+)\)")
OUTPUT_MARK = " net output #"
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



# ------------------------------------------------------------------------------------- timestamps
class Clock:
    """glog line prefixes -> seconds since the start, like parse_log.py: a year-less prefix takes the
    year of the log file, and the year goes up by one when the month goes down (Dec 31 -> Jan 1)."""

    def __init__(self, year: int):
        self.year = year
        self.last_month = 0
        self.start_us: int | None = None
        self.last_us: int | None = None  # set by the front ends from the last timestamped line
        self._minute: dict[str, int] = {}  # "I1122 09:34" -> microseconds at that minute: parse once per minute

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
class Builder:
    """Turns what the two handlers find into rows and run state. Row rules follow ``parse_log.py``:

    * nothing counts before the first ``Iteration N`` line;
    * a train (test) row is opened by the first ``Train (Test) net output`` of an iteration; its Seconds come
      from that line's timestamp and its LearningRate is the last ``lr =`` printed before it;
    * outputs of test net ``#k`` (k > 0) get the column name ``NAME@netk``; old ``Test score #k`` lines the
      name ``score_k``; a ``Test loss: X`` line the name ``test_loss``;
    * a train row opened before any ``lr =`` line (the log's first display block, or NVCaffe's first ones, which
      print none) takes the ``lr =`` of its own iteration, when that block prints one;
    * a first row whose LearningRate is still unknown takes the second row's.
    """

    def __init__(self, year: int):
        self.clock = Clock(year)
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
                row = self.train_row  # a row that opened before any lr was printed takes its own block's lr
                if (row is not None and row["NumIters"] == it and row.get("Segment", 0) == self.segment
                        and row["LearningRate"] != row["LearningRate"]):
                    row["LearningRate"] = v
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


def has_rare(text: str) -> bool:
    return any(mark in text for mark in _RARE)


# ----------------------------------------------------------------------------------- front end 1


# ------------------------------------------------------------------------------------- reading
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


def _run(builder: Builder, chunks: Iterable[str]) -> str | None:
    """Feed chunks of log text to ``builder`` segment by segment; return an unterminated last line."""
    pending = ""  # text of the segment in progress; starts after "Iteration " (or at the start of the log)
    in_head = False  # does ``pending`` start with an unprocessed Iteration head?
    prev_prefix = ""  # start of the line holding the next "Iteration " (its glog prefix)
    end_text = ""  # the last 4 KB of the text: their last timestamp ends the run's wall time
    total = 0  # characters read
    for chunk in chunks:
        buf = pending + chunk
        end_text = (end_text + chunk)[-4096:]
        total += len(chunk)
        rare = has_rare(buf)
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
            _segment(builder, complete, in_head, has_rare(complete), prev_prefix)
        elif in_head:
            rest = "Iteration " + rest
        truncated = rest or None
    builder.clock.last_us = end_micros(builder.clock, end_text, total <= 4096)
    return truncated


def end_micros(clock: Clock, end_text: str, whole: bool) -> int | None:
    """The time of the last whole timestamped line in ``end_text`` (the text's last 4 KB; ``whole`` when that is
    all of it, so that its first line is whole too): where the run's wall time ends. Independent of chunking."""
    lines = end_text.split("\n")[:-1]  # the piece after the last newline is no whole line
    for line in reversed(lines if whole else lines[1:]):
        us = clock.micros(line)
        if us is not None:
            return us
    return None


def _segment(builder: Builder, seg: str, in_head: bool, rare: bool, prefix: str) -> str:
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


def default_year(path: Path | None) -> int:
    """The year for year-less glog prefixes: the log file's, as parse_log.py takes it; else this year."""
    try:
        if path is not None:
            return _dt.datetime.fromtimestamp(os.path.getctime(path)).year
    except OSError:
        pass
    return _dt.date.today().year


def parse_file(path: Path, year: int | None = None) -> Curves:
    """The whole log file, streamed (constant memory besides the rows); ``year`` for glog prefixes without one
    (default: the file's ctime year, as parse_log.py takes it). Raises OSError when the file cannot be read."""
    builder = Builder(year or default_year(path))
    truncated = _run_quiet(builder, _chunks_from_file(path))
    return builder.curves(truncated)


def parse_lines(lines: Iterable, year: int | None = None) -> Curves:
    """Log lines (str or bytes, with or without their newline; each item is one whole line)."""
    builder = Builder(year or default_year(None))
    truncated = _run_quiet(builder, _chunks_from_lines(lines))
    return builder.curves(truncated)


def _run_quiet(builder: Builder, chunks: Iterable[str]) -> str | None:
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


# ------------------------------------------------------ what the native scanner shares with this parser
RARE_LINE_MARKS = ("Solving ", "Test score #", "Test loss: ", "Check failed", "***", "fault", "terminate called",
                   "core dumped")


def plain_cut_line(partial: str) -> bool:
    """The unterminated last line is one the native scanner may leave to :func:`truncated_tail`: no fatal or rare
    marker, no output, at most one head (the per-line path reads every head of a cut line but its last)."""
    return not (partial.startswith("F") or OUTPUT_MARK in partial or any(m in partial for m in RARE_LINE_MARKS)
                or partial.count("Iteration ") > 1)


def truncated_tail(partial: str) -> str | None:
    """``Curves.truncated_tail`` of a log whose unterminated last line is ``partial`` (a plain cut line)."""
    after = partial.rpartition("Iteration ")
    return (("Iteration " + after[2]) if after[2] else None) if after[1] else (partial or None)


# --------------------------------------------------------------------------------- the native path
