"""Following a log while Caffe writes it: :class:`LogTail` reads what a run appended since the last look and
feeds whole lines to a :class:`LogFollower`, which keeps what the sweep driver and ``caffegen status`` ask about
(iteration, losses, test metrics, speed). It runs the reference parser's own handlers, one line at a time.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

from .curves import BASE_COLUMNS, Curves, best
from .reference import Builder, has_rare

__all__ = ["LogFollower", "LogTail"]


class LogFollower:
    """Follow a log one line at a time; :meth:`curves` gives the rows so far (the same rows as ``parse_log``)."""

    def __init__(self, year: int | None = None):
        self._b = Builder(year or _dt.date.today().year)
        self._last_stamp = ""
        self._seen_loss: float | None = None
        self._segment_start: tuple[int, int, int] | None = None  # (segment, iteration, time in us) of its first head
        self._last_head: tuple[int, int] | None = None             # (iteration, time in us) of the latest head
        self.loss_history: list[tuple[int, float]] = []  # (N, X) of every ``Iteration N, loss = X`` line
        self.peak_loss: float | None = None              # the largest finite X so far (a cheap divergence gate)

    def feed(self, line: str | bytes) -> None:
        """Take one line (with or without its newline). Never raises on odd text."""
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("utf-8", "replace")
        for piece in line.split("\n"):
            self._feed_one(piece)

    def _feed_one(self, line: str) -> None:
        if not line:
            return
        b = self._b
        stamped = line[0] in "IWEF" and line[1:5].isdecimal()
        if stamped:
            self._last_stamp = line[:40]
        parts = line.split("Iteration ")
        text = "\n" + parts[0]
        prefix = parts[0]
        if len(text) > 1:
            b.tail(text, has_rare(text))
        for seg in parts[1:]:
            b.head(seg, prefix)
            prefix = prefix + "Iteration " + seg
            us = b.clock.micros(line) if stamped and b.iteration >= 0 else None
            if us is not None:
                if self._segment_start is None or self._segment_start[0] != b.segment:
                    self._segment_start = (b.segment, b.iteration, us)
                self._last_head = (b.iteration, us)
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

    def test_rows_seen(self) -> list[dict]:
        """Every test row so far (one per test pass), the one being filled included."""
        b = self._b
        return b.test_rows + ([b.test_row] if b.test_row else [])

    def test_history(self, metric: str) -> list[tuple[int, float]]:
        """(iteration, value) of one test metric, in log order; a test output whose iteration is not known (-1: no
        ``Testing net`` line before it since the run's start) is left out: it has no place on a curve."""
        return [(r["NumIters"], r[metric]) for r in self.test_rows_seen()
                if r.get(metric) is not None and r["NumIters"] >= 0]

    def best_test(self, metric: str) -> tuple[float, int] | None:
        """(best value, iteration): max for accuracy-like metrics, min for losses; None before any finite value."""
        return best(self.test_history(metric), metric)

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

    @property
    def iterations_per_second(self) -> float | None:
        """Training speed of the run now in the log (its latest segment: a resumed run's earlier attempts and the
        pause between them do not count), from the glog time of its first and latest ``Iteration`` lines."""
        if self._segment_start is None or self._last_head is None:
            return None
        _, it0, t0 = self._segment_start
        it1, t1 = self._last_head
        if t1 <= t0 or it1 <= it0:
            return None
        return (it1 - it0) / ((t1 - t0) / 1e6)


class LogTail:
    """Incremental reader of a growing log file (keeps a partial last line until it is complete)."""

    def __init__(self, path: str | Path, follower: LogFollower | None = None) -> None:
        self.path = Path(path)
        self.follower = follower or LogFollower()
        self.offset = 0
        self._partial = b""

    def read(self) -> int:
        """Feed what is new; return the number of complete lines fed."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        if not data:
            return 0
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            self.follower.feed(raw.decode("utf-8", errors="replace"))
        return len(lines)

    def flush(self) -> None:
        """Feed the unterminated last line too (the run has ended)."""
        self.read()
        if self._partial:
            self.follower.feed(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""
