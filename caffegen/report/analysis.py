"""The verdict of a sweep, from its store and logs: group the repeats of each grid point, rank the variants, say
which one won and **how sure that is** (which variants are within noise of it, :mod:`.stats`), summarise each axis
with intervals, and say why each other variant lost. Pure functions over :class:`RunReport` and
:class:`VariantReport` (except :func:`load_runs`, which reads the sweep folder)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CaffegenError
from ..layout import TRAIN_LOG
from ..logs import parse_log
from ..run.status import DIVERGED, FAILED
from ..sweep.store import SweepRecord, read_sweep
from .diagnose import Finding, diagnose
from .stats import SeedNoise, could_be_best, mean, mean_interval, proportions_differ, seed_noise, stdev, wilson

__all__ = ["RunReport", "VariantReport", "Verdict", "load_runs", "group_runs", "rank", "ranked_variants",
           "winner_runs", "seed_noise_of", "verdict", "axis_summary", "why_lost", "table_rows", "diagnosis_text",
           "heads_text", "title"]


@dataclass
class RunReport:
    """One run (one seed of a grid point) as the store and its log describe it."""

    variant: str
    axes: dict[str, Any]
    status: str
    reason: str
    values: dict[str, Any]
    curves: Any = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def best_top1(self) -> float | None:
        return self.values.get("best_top1")

    @property
    def group(self) -> str:
        return self.values.get("grp") or self.variant

    @property
    def test_images(self) -> int | None:
        return self.values.get("test_images")


@dataclass
class VariantReport:
    """One grid point: its runs (its repeats, or the one run), what they scored, and its place in the verdict."""

    name: str
    axes: dict[str, Any]
    runs: list[RunReport]
    label: str = ""       # its rank as shown: "1", "2", "3"
    tied: bool = False    # within noise of the winner (the winner itself too): the data cannot separate them
    noise: SeedNoise | None = None   # the sweep's seed noise (set by the verdict), for the interval of a mean
    maximize: bool = True  # the metric's direction: higher is better (accuracy), or lower (a loss)

    @property
    def best(self) -> list[float]:
        """Each run's best value of the ranking metric (runs without one left out)."""
        return [r.best_top1 for r in self.runs if r.best_top1 is not None]

    @property
    def final(self) -> list[float]:
        return [r.values["final_top1"] for r in self.runs if r.values.get("final_top1") is not None]

    @property
    def score(self) -> float | None:
        """What ranks it: the mean of its runs' best value of the ranking metric."""
        return mean(self.best) if self.best else None

    @property
    def merit(self) -> float:
        """The score with its direction: higher is always better (-inf without one)."""
        return -math.inf if self.score is None else (self.score if self.maximize else -self.score)

    @property
    def test_images(self) -> int | None:
        return next((r.test_images for r in self.runs if r.test_images), None)

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% interval of the score: Wilson's over the images one test pass evaluates for a single run, the
        t-interval of the mean over repeats."""
        best = self.best
        if len(best) >= 2 and self.noise is not None and self.noise.df > 0:   # the sweep's pooled seed noise
            from scipy import stats

            half = float(stats.t.ppf(0.975, self.noise.df)) * self.noise.sigma / math.sqrt(len(best))
            lo, hi = mean(best) - half, mean(best) + half
            return (max(0.0, lo), min(1.0, hi)) if self.maximize else (lo, hi)
        if len(best) >= 2:
            lo, hi = mean_interval(best)
            return (max(0.0, lo), min(1.0, hi)) if self.maximize else (lo, hi)
        if best and self.test_images and self.maximize and 0.0 <= best[0] <= 1.0:  # an accuracy: a proportion
            return wilson(best[0], self.test_images)
        return None

    @property
    def half_width(self) -> float | None:
        iv = self.interval
        return (iv[1] - iv[0]) / 2 if iv else None

    @property
    def status(self) -> str:
        return "/".join(dict.fromkeys(r.status for r in self.runs))

    def mean_of(self, key: str) -> float | None:
        values = [r.values[key] for r in self.runs if r.values.get(key) is not None]
        return mean(values) if values else None

    @property
    def findings(self) -> list[Finding]:
        """The first run's findings and any other run's that it lacks."""
        seen, out = set(), []
        for r in self.runs:
            for f in r.findings:
                if f.code not in seen:
                    seen.add(f.code)
                    out.append(f)
        return out


def group_runs(runs: list[RunReport], maximize: bool = True) -> list[VariantReport]:
    """The repeats of each grid point together, in the sweep's order (``maximize``: the metric's direction)."""
    groups: dict[str, VariantReport] = {}
    for r in runs:
        groups.setdefault(r.group, VariantReport(r.group, r.axes, [], maximize=maximize)).runs.append(r)
    return list(groups.values())


def rank(variants: list[VariantReport]) -> list[VariantReport]:
    """Best score first (the highest accuracy, the lowest loss); variants without a test result last; ties broken by
    lower final loss, then name."""
    def key(v: VariantReport):
        loss = v.mean_of("final_loss")
        return (v.score is None, -v.merit, loss if loss is not None else math.inf, v.name)

    return sorted(variants, key=key)


def ranked_variants(runs: list[RunReport], record: SweepRecord) -> list[VariantReport]:
    """The sweep's variants, best first by its ranking metric in its direction: the one ranking every reader uses."""
    return rank(group_runs(runs, maximize=record.maximize))


def winner_runs(sweep_dir: Path) -> list[Path]:
    """The run folders of a sweep's winning variant (each of its repeats)."""
    runs, record = load_runs(sweep_dir)
    ranked = [v for v in ranked_variants(runs, record) if v.score is not None]
    if not ranked:
        raise CaffegenError(f"{sweep_dir}: no run has a test result yet: no winner")
    return [Path(sweep_dir) / r.variant for r in ranked[0].runs]


def seed_noise_of(variants: list[VariantReport]) -> SeedNoise | None:
    """The sweep's seed noise from every variant's repeats ({variant: {seed: best}}); None without repeats."""
    groups = {}
    for v in variants:
        runs = [r for r in v.runs if r.best_top1 is not None]
        groups[v.name] = {(r.values.get("seed") if r.values.get("seed") is not None else i): r.best_top1
                          for i, r in enumerate(runs)}
    return seed_noise(groups)


def _within_noise(w: VariantReport, scored: list[VariantReport], noise: SeedNoise | None) -> list[VariantReport]:
    """The variants the data cannot tell from the winner ``w``: with repeats, those Hsu's MCB says could be the best
    (the sweep's pooled seed noise); with one run each, the two-proportion z-test on the images a test pass
    evaluated; with neither (no image count for this metric), only an equal score."""
    others = [v for v in scored if v is not w]
    if noise is not None:
        bounds = could_be_best({v.name: v.score for v in scored}, {v.name: len(v.best) for v in scored}, noise,
                               maximize=w.maximize)
        return [v for v in others if bounds[v.name] >= 0]
    if w.test_images and w.maximize and all(v.test_images and 0 <= v.score <= 1 for v in scored):
        return [v for v in others if not proportions_differ(w.score, w.test_images, v.score, v.test_images)]
    return [v for v in others if v.score == w.score]


@dataclass
class Verdict:
    """Who won, who is within noise of the winner, and the sentence that says so."""

    winner: VariantReport | None
    tied: list[VariantReport]
    headline: str
    method: str


def _what(v: VariantReport) -> str:
    return ", ".join(f"{k}={v}" for k, v in v.axes.items())


def _pm(v: VariantReport) -> str:
    hw = v.half_width
    return f"{v.score:.3f} ± {hw:.3f}" if hw is not None else f"{v.score:.3f}"


def _names(vs: list[VariantReport], most: int = 4) -> str:
    names = [v.name for v in vs[:most]] + ([f"{len(vs) - most} more"] if len(vs) > most else [])
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def verdict(ranked: list[VariantReport], *, iterations: int | None = None, metric: str = "top-1") -> Verdict:
    """Rank labels (1, 2, 3...: a variant the data cannot separate from the winner keeps its own rank and is
    flagged ``tied``, never labelled "1=" as if shown equal), and the headline: the winner with its interval, and
    which variants the data cannot separate from it; when most runs were still improving at the end, that the
    ranking measures only the first ``iterations``."""
    scored = [v for v in ranked if v.score is not None]
    repeats = max((len(v.best) for v in scored), default=0)
    n = next((v.test_images for v in scored if v.test_images), None)
    proportion = all(v.maximize for v in scored)
    noise = seed_noise_of(scored) if repeats >= 2 else None
    for v in ranked:
        v.noise = noise
    method = (f"Hsu's multiple comparisons with the best on the best {metric} (Dunnett's one-sided critical value "
              f"for {max(1, len(scored) - 1)} comparisons, 5% level), {noise.describe()}" if noise is not None else
              f"two-proportion z-test on {metric} over the {n} images of a test pass, 5% level" if n and proportion
              else "no noise estimate (no image count for this metric, no repeats): only equal scores tie")
    for i, v in enumerate(ranked, 1):
        v.label, v.tied = str(i), False
    if not scored:
        return Verdict(None, [], "No run produced a test accuracy, so there is no winner: see the diagnoses below.",
                       method)
    w = scored[0]
    tied = _within_noise(w, scored, noise)
    for v in [w, *tied]:
        v.tied = True
    where = f"over {repeats} repeats" if repeats >= 2 else f"at {n} val images per test pass" if n else "on these data"
    if len(scored) == 1:
        head = f"{w.name} ({_what(w)}) is the only variant with a test result: best {metric} {_pm(w)}."
    elif not tied:
        head = f"{w.name} ({_what(w)}) won: best test {metric} {_pm(w)}, separated from every other variant {where}."
    elif len(tied) + 1 > max(2, len(scored) // 2):
        head = (f"No variant is separable from {_names([w, *tied])} {where} ({len(tied) + 1} of {len(scored)} "
                f"within noise of the best, {w.name} at {_pm(w)}): add repeats or val images to tell them apart.")
    else:
        verb = "is" if len(tied) == 1 else "are"
        head = (f"{w.name} ({_what(w)}) won (best test {metric} {_pm(w)}); {_names(tied)} {verb} within noise of it "
                f"{where}: tied.")
    runs = [r for v in ranked for r in v.runs]
    improving = sum(any(f.code == "still-improving" for f in r.findings) for r in runs)
    if runs and improving > len(runs) / 2:
        span = f"the first {iterations} iterations" if iterations else "these iterations"
        head += (f" Most runs ({improving} of {len(runs)}) were still improving when they stopped: the ranking "
                 f"measures {span}, not where each schedule ends up.")
    return Verdict(w, tied, head, method)


def axis_summary(variants: list[VariantReport], metric: str = "top-1") -> list[str]:
    """Per grid axis, the mean score of the variants at each value, with its 95% interval (over those variants), best
    first in the metric's direction (variants without a result left out)."""
    lines = []
    sign = 1.0 if all(v.maximize for v in variants) else -1.0
    for axis in dict.fromkeys(k for v in variants for k in v.axes):
        by: dict[Any, list[float]] = {}
        for v in variants:
            if axis in v.axes and v.score is not None:
                by.setdefault(v.axes[axis], []).append(v.score)
        if len(by) < 2:
            continue
        stats_by = sorted(((mean(s), k, s) for k, s in by.items()), key=lambda t: -sign * t[0])
        parts = []
        for m, k, s in stats_by:
            lo, hi = mean_interval(s)
            parts.append(f"{_axis_value(k)} {m:.3f}" + (f" ± {(hi - lo) / 2:.3f}" if len(s) > 1 else ""))
        lines.append(f"{axis}: mean best {metric} {', '.join(parts)} (best {_axis_value(stats_by[0][1])}, "
                     f"worst {_axis_value(stats_by[-1][1])}).")
    return lines


def _axis_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


PEAK_DROP = 0.03  # a final top-1 this far below the run's best counts as "fell back"


def why_lost(v: VariantReport, winner: VariantReport) -> str:
    """One line: how far behind the winner a variant finished (within noise or not), and the visible reason."""
    if v is winner:
        return "winner"
    statuses = {r.status for r in v.runs}
    bad = next((r for r in v.runs if r.status in (DIVERGED, FAILED)), None)
    if bad is not None and v.score is None:
        return f"{bad.status}: {bad.reason}" if bad.reason else bad.status
    best, top = v.score, winner.score
    if best is None or top is None:
        return "no test result"
    gap = (top - best) if v.maximize else (best - top)
    bits = [(f"within noise of the winner ({gap:.3f} behind)" if v.tied else f"{gap:.3f} behind the winner")
            if gap > 0 else "tied with the winner on top-1"]
    if statuses & {DIVERGED, FAILED}:
        bits.append(f"{len([r for r in v.runs if r.status in (DIVERGED, FAILED)])} of {len(v.runs)} repeats "
                    "diverged or failed")
    final, best_iter, last = v.mean_of("final_top1"), v.runs[0].values.get("best_iter"), v.mean_of("last_iter")
    fell = 0.0 if final is None else (best - final) if v.maximize else (final - best)
    if final is not None and fell >= PEAK_DROP and best_iter is not None and last and best_iter < last:
        bits.append(f"peaked at iteration {best_iter} ({best:.3f}) and fell back to {final:.3f}: "
                    "the lr stayed too high late in the run (lower base_lr, or a policy that decays more)")
    wl, rl = winner.mean_of("final_loss"), v.mean_of("final_loss")
    if wl is not None and rl is not None and rl > 1.25 * wl:
        bits.append(f"final train loss {rl:.3g} vs the winner's {wl:.3g}: it fit the data more slowly")
    codes = {f.code for f in v.findings}
    for code, text in (("still-improving", "still improving when it stopped"), ("overfitting", "overfitting"),
                       ("stalled", "stalled")):
        if code in codes:
            bits.append(text)
    return "; ".join(bits)


def load_runs(sweep_dir: Path) -> tuple[list[RunReport], SweepRecord]:
    """Every run of a sweep folder with its parsed log and diagnosis, and the sweep's record."""
    sweep_dir = Path(sweep_dir)
    rows, record = read_sweep(sweep_dir)
    runs = []
    for row in rows:
        log = sweep_dir / row.variant / TRAIN_LOG
        curves = parse_log(log) if log.exists() else None
        findings = diagnose(curves, max_iter=row["max_iter"], top1=record.metric) if curves is not None else []
        runs.append(RunReport(row.variant, row.axes, row.status, row["reason"] or "", row.values, curves, findings))
    return runs, record


def heads_text(r: RunReport, heads: list[str]) -> str | None:
    """Best test value of every head of a several-headed net (GoogLeNet's three), the ranked one last."""
    if len(heads) < 2 or r.curves is None:
        return None
    parts = []
    for name in heads:
        _, b = r.curves.test.final_best(name)
        parts.append(f"{name} {b[0]:.3f}" if b else f"{name} -")
    return "best per head: " + ", ".join(parts) + f" (ranked by {heads[-1]})"


def title(record: SweepRecord, sweep_dir: Path) -> str:
    """The report's title line: the sweep, and the net it tuned."""
    net = record.get("net") or {}
    what = f" (net {net['name']}: {net['file']})" if net.get("kind") == "user" else ""
    return f"caffegen sweep report: {record.name or sweep_dir.name}{what}"


def diagnosis_text(v: VariantReport | RunReport) -> str:
    return "; ".join(f.title for f in v.findings) or "-"


def repeats_text(v: VariantReport) -> str:
    return ", ".join(f"{b:.3f}" for b in v.best) if len(v.runs) > 1 else ""


def table_rows(ranked: list[VariantReport], winner: VariantReport | None) -> list[dict[str, Any]]:
    """One row per variant (its repeats in one row): what summary.csv holds."""
    rows = []
    for v in ranked:
        iv = v.interval
        rows.append({"rank": v.label, "variant": v.name, **v.axes, "status": v.status, "repeats": len(v.runs),
                     "best_top1": v.score, "best_top1_sd": stdev(v.best) if len(v.best) > 1 else None,
                     "best_top1_lo": iv[0] if iv else None, "best_top1_hi": iv[1] if iv else None,
                     "best_top1_each": repeats_text(v), "tied_with_winner": v.tied,
                     "final_top1": mean(v.final) if v.final else None,
                     "final_top1_sd": stdev(v.final) if len(v.final) > 1 else None,
                     "best_top5": v.mean_of("best_top5"), "best_iter": v.runs[0].values.get("best_iter"),
                     "final_loss": v.mean_of("final_loss"), "wall_s": sum(r.values.get("wall_s") or 0 for r in v.runs),
                     "test_images": v.test_images, "diagnosis": diagnosis_text(v),
                     "why": why_lost(v, winner) if winner else "",
                     "reason": "; ".join(r.reason for r in v.runs if r.reason)})
    return rows
