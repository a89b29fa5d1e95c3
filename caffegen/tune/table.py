"""Recorded learning curves: a tabular benchmark of one problem, what the replay runs the tuner against.

Every configuration of a space (base_lr x schedule) trained with several seeds, at every length the tuner trains
(the full length, and the search's shorter length with its schedule fitted to it), each run's whole curve kept: the
ranking metric and the test loss at every test pass, the seconds from the run's launch to each pass, its whole wall
time (caffe's start included), its train loss; plus each seed's LR range test. The HPO field judges tuners this
way (LCBench, NAS-Bench-201, HPOBench): a tuner then runs against the table in seconds instead of hours, over
hundreds of seeds. ``bench/tables/record.py`` records one (resumably) with the real caffe.

A configuration's **truth** is the mean over the table's seeds of its best value at the full length (what the tune
ranks by and what its final run delivers); a base_lr between the table's values is read at the nearest one on the
log scale. Stored as gzip'd JSON, a file per problem, with the caffegen version and commit that made it.
"""
from __future__ import annotations

import gzip
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["FORMAT", "Curve", "CurveTable", "load_table", "save_table", "Config", "short_horizon"]

FORMAT = 1
Config = tuple[float, str]     # (base_lr, lr_policy)


@dataclass(frozen=True)
class Curve:
    """One recorded run: its configuration, seed and length, and what it reported at each test pass."""

    base_lr: float
    lr_policy: str
    seed: int
    iters: int
    steps: tuple[int, ...]          # iterations of the test passes (0 included)
    values: tuple[float, ...]       # the ranking metric at each (nan where the run had diverged)
    losses: tuple[float, ...]       # the test loss at each
    times: tuple[float, ...]        # seconds from the run's launch to each test pass
    wall_s: float                   # launch to exit
    train: tuple[tuple[int, float], ...] = ()   # (iteration, train loss)
    overhead_s: float = 0.0         # the driver's own work for the run (render, launch, log parsing): measured
    attempts: int = 1               # >1: the run was interrupted and resumed from its snapshot while recorded

    @property
    def config(self) -> Config:
        return (self.base_lr, self.lr_policy)

    def best(self, maximize: bool = True, upto: int | None = None) -> float | None:
        """The best finite value over the test passes at or before ``upto`` (None: none finite)."""
        vals = [v for s, v in zip(self.steps, self.values) if (upto is None or s <= upto) and math.isfinite(v)]
        if not vals:
            return None
        return max(vals) if maximize else min(vals)

    def time_at(self, step: int) -> float:
        """Seconds from launch to the test pass at ``step`` (the run's end for a step past its last pass)."""
        for s, t in zip(self.steps, self.times):
            if s >= step:
                return t
        return self.wall_s


@dataclass
class CurveTable:
    """One problem's recorded curves. ``problem``: its name, classes, val/train images, the full length ``iters``
    and the search length ``search_iters``, the metric and its direction; ``meta``: who made it (caffegen version,
    commit, date, machine); ``lrfind``: each seed's range test (``suggested``, ``blew_up_at``, ``suggestions``)."""

    problem: dict[str, Any]
    meta: dict[str, Any]
    curves: list[Curve]
    lrfind: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {(c.base_lr, c.lr_policy, c.seed, c.iters): c for c in self.curves}
        self._truth: dict[Config, float] = {}

    @property
    def name(self) -> str:
        return self.problem["name"]

    @property
    def maximize(self) -> bool:
        return bool(self.problem.get("maximize", True))

    @property
    def iters(self) -> int:
        return int(self.problem["iters"])

    @property
    def search_iters(self) -> int:
        return int(self.problem["search_iters"])

    def lrs(self) -> list[float]:
        return sorted({c.base_lr for c in self.curves})

    def policies(self) -> list[str]:
        return list(dict.fromkeys(c.lr_policy for c in self.curves))

    def seeds(self, iters: int | None = None) -> list[int]:
        return sorted({c.seed for c in self.curves if iters is None or c.iters == iters})

    def configs(self, iters: int | None = None) -> list[Config]:
        it = self.iters if iters is None else iters
        return list(dict.fromkeys(c.config for c in self.curves if c.iters == it))

    def nearest_lr(self, lr: float) -> float:
        """The table's base_lr nearest to ``lr`` on the log scale."""
        return min(self.lrs(), key=lambda x: abs(math.log(x) - math.log(lr)))

    def config(self, lr: float, policy: str) -> Config:
        return (self.nearest_lr(lr), policy)

    def curve(self, lr: float, policy: str, seed: int, iters: int | None = None) -> Curve:
        """The recorded run of (the nearest table base_lr, policy, seed) at ``iters`` (default: the full length)."""
        key = (self.nearest_lr(lr), policy, seed, self.iters if iters is None else iters)
        try:
            return self._index[key]
        except KeyError:
            raise InputError(f"table {self.name}: no run of base_lr {key[0]:g} {policy} seed {seed} at {key[3]} "
                             "iterations (record it: bench/tables/record.py)") from None

    def truth(self, lr: float, policy: str) -> float:
        """The configuration's seed-mean of its best value at the full length (a diverged run counts as its worst:
        chance for top-1)."""
        key = self.config(lr, policy)
        if key not in self._truth:
            worst = self.worst
            vals = [c.best(self.maximize) for c in self.curves if c.config == key and c.iters == self.iters]
            if not vals:
                raise InputError(f"table {self.name}: no full-length run of base_lr {key[0]:g} {policy}")
            self._truth[key] = sum(worst if v is None else v for v in vals) / len(vals)
        return self._truth[key]

    @property
    def worst(self) -> float:
        """What a run with no finite value scores: chance for an accuracy, the worst recorded loss otherwise."""
        if self.maximize:
            return 1.0 / max(1, int(self.problem.get("classes", 1)))
        return max(v for c in self.curves for v in c.values if math.isfinite(v))

    def best_config(self) -> tuple[Config, float]:
        sign = 1.0 if self.maximize else -1.0
        best = max(self.configs(), key=lambda k: sign * self.truth(*k))
        return best, self.truth(*best)

    def seed_sd(self, iters: int | None = None) -> float:
        """The seed-to-seed sd of the best value at ``iters`` (seeds as blocks: the residual of value = config +
        seed), pooled over every configuration that never diverged."""
        import numpy as np

        it = self.iters if iters is None else iters
        seeds = self.seeds(it)
        rows = []
        for k in self.configs(it):
            runs = [self._index.get((*k, s, it)) for s in seeds]
            if all(c is not None and all(math.isfinite(v) for v in c.values) for c in runs):
                rows.append([c.best(self.maximize) for c in runs])
        x = np.array(rows, dtype=float)
        if x.shape[0] < 2 or x.shape[1] < 2:
            return 0.0
        resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
        return float(math.sqrt((resid ** 2).sum() / ((x.shape[0] - 1) * (x.shape[1] - 1))))

    def top_half_sd(self, iters: int | None = None) -> float:
        """The seed-to-seed sd of the best value pooled within the better half of the configurations (by truth):
        the noise among the answers a tuner is judged on (the blocked sd of :meth:`seed_sd` also carries the
        configurations that learn on one seed and collapse on another)."""
        it = self.iters if iters is None else iters
        sign = 1.0 if self.maximize else -1.0
        configs = sorted(self.configs(it), key=lambda k: -sign * self.truth(*k))
        var = []
        for k in configs[:max(2, len(configs) // 2)]:
            vals = [c.best(self.maximize) for c in (self._index.get((*k, s, it)) for s in self.seeds(it)) if c]
            vals = [self.worst if v is None else v for v in vals]
            if len(vals) >= 2:
                m = sum(vals) / len(vals)
                var.append(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
        return math.sqrt(sum(var) / len(var)) if var else 0.0

    def compute_of(self, iters: int | None = None, seeds: int | None = None) -> float:
        """Slot-seconds of the grid at ``iters`` (every configuration, ``seeds`` of the recorded seeds or all)."""
        it = self.iters if iters is None else iters
        keep = set(self.seeds(it)[:seeds] if seeds else self.seeds(it))
        return sum(c.wall_s for c in self.curves if c.iters == it and c.seed in keep)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "problem": self.problem, "meta": self.meta, "lrfind": self.lrfind,
                "curves": [_curve_json(c) for c in self.curves]}


def _num(v: float) -> Any:
    return v if math.isfinite(v) else None


def _curve_json(c: Curve) -> dict[str, Any]:
    d = asdict(c)
    d["values"] = [_num(round(v, 5)) for v in c.values]
    d["losses"] = [_num(round(v, 5)) for v in c.losses]
    d["times"] = [round(t, 2) for t in c.times]
    d["train"] = [[i, _num(round(v, 4))] for i, v in c.train]
    return d


def _curve(d: dict[str, Any]) -> Curve:
    nan = float("nan")
    return Curve(float(d["base_lr"]), str(d["lr_policy"]), int(d["seed"]), int(d["iters"]), tuple(d["steps"]),
                 tuple(nan if v is None else float(v) for v in d["values"]),
                 tuple(nan if v is None else float(v) for v in d["losses"]), tuple(d["times"]), float(d["wall_s"]),
                 tuple((int(i), nan if v is None else float(v)) for i, v in d.get("train", ())),
                 float(d.get("overhead_s", 0.0)), int(d.get("attempts", 1)))


def save_table(table: CurveTable, path: Path) -> Path:
    """Write ``table`` as gzip'd JSON (atomically: a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(table.to_json(), fh, separators=(",", ":"))
    tmp.replace(path)
    return path


def load_table(path: Path, *, version: str | None = None) -> CurveTable:
    """Read a table; one InputError line when it is missing, unreadable, of another format, or made by another
    caffegen ``version`` (when given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such table (record it: bench/tables/record.py)")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: not a curve table ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(f"{path}: a curve table of format {raw.get('format') if isinstance(raw, dict) else '?'}, "
                         f"this caffegen reads format {FORMAT}: record it again (bench/tables/record.py)")
    made_by = raw.get("meta", {}).get("caffegen")
    if version is not None and made_by != version:
        raise InputError(f"{path}: recorded by caffegen {made_by}, this is caffegen {version}: record it again "
                         "(bench/tables/record.py) or use the caffegen that made it")
    return CurveTable(raw["problem"], raw["meta"], [_curve(d) for d in raw["curves"]], raw.get("lrfind", []))


def short_horizon(table: CurveTable) -> float:
    """Spearman's rank correlation between each configuration's seed-mean best value at the search length and at
    the full length: 1 means the search's ranking is the full length's (no short-horizon bias)."""
    from scipy import stats

    worst = table.worst
    xs, ys = [], []
    for config in table.configs():
        short = [table.curve(*config, s, table.search_iters).best(table.maximize) for s in table.seeds()]
        xs.append(sum(worst if v is None else v for v in short) / len(short))
        ys.append(table.truth(*config))
    return float(stats.spearmanr(xs, ys).statistic)
