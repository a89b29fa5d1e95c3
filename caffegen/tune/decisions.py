"""What each stage of a tune decided, typed: one dataclass per stage, written into ``tune.json`` (``to_json``) and
read back (:func:`decision_of`) by a resumed tune, the tune's report and anything else that reads a tune folder.

The JSON shapes are those ``tune.json`` has always held (a folder from an earlier caffegen reads the same); a key
a stage does not know is ignored, a missing optional one takes its default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

__all__ = ["Decision", "Measured", "SanityCheck", "LrRange", "Searched", "Confirmed", "FinalRun", "Looked",
           "DECISIONS", "decision_of"]


@dataclass(frozen=True)
class Decision:
    """A stage's decision: its JSON form and a line that says it (the report's "decision" column)."""

    stage: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Measured(Decision):
    """measure: the speed of this net here (:class:`caffegen.probes.timing.Timing`'s numbers)."""

    stage: ClassVar[str] = "measure"
    iter_s: float
    test_s: float
    start_s: float
    iters: int = 0
    wall_s: float = 0.0
    check_s: float = 0.0
    figure_s: float = 0.0

    def describe(self) -> str:
        return (f"{1000 * self.iter_s:.1f} ms per iteration, {self.test_s:.2f} s per test pass, "
                f"{self.start_s:.1f} s start and end of a run")


@dataclass(frozen=True)
class SanityCheck(Decision):
    """sanity: did the net overfit 2 images per class (at base_lr ``lr``), and if not, the likely causes."""

    stage: ClassVar[str] = "sanity"
    passed: bool
    line: str
    causes: list[str] = field(default_factory=list)
    lr: float | None = None

    def describe(self) -> str:
        return self.line + ("" if self.passed else " — " + "; ".join(self.causes))


@dataclass(frozen=True)
class LrRange(Decision):
    """lr-find: the base_lr range the search covers, and why (the range test's suggestions)."""

    stage: ClassVar[str] = "lr-find"
    low: float
    high: float
    why: str = ""
    suggestions: dict[str, float] = field(default_factory=dict)
    blew_up_at: float | None = None

    def describe(self) -> str:
        return f"base_lr {self.low:g} .. {self.high:g}: {self.why}"


@dataclass(frozen=True)
class Searched(Decision):
    """search: its finished trials with a result, best first, one per configuration (name, point, value, runs,
    metric, maximize): the confirm stage takes the first few."""

    stage: ClassVar[str] = "search"
    candidates: list[dict[str, Any]] = field(default_factory=list)
    lr_range: list[float] | None = None     # where the base_lr range stood at the end (it follows the best trials)

    def describe(self) -> str:
        return (f"{len(self.candidates)} finished trials; the best at the search length: "
                + ", ".join(f"{c['name']} ({c['value']:.3f})" for c in self.candidates[:3])
                + (f"; base_lr range at the end {self.lr_range[0]:.3g} .. {self.lr_range[1]:.3g}"
                   if self.lr_range else ""))


@dataclass(frozen=True)
class Confirmed(Decision):
    """confirm: the winner (a candidate with its fresh seeds' ``mean`` over ``seeds``), those it is tied with, how
    that was decided, the headline, and every candidate's value per fresh seed."""

    stage: ClassVar[str] = "confirm"
    winner: dict[str, Any]
    headline: str
    tied: list[str] = field(default_factory=list)
    method: str = ""
    values: dict[str, dict[Any, float]] = field(default_factory=dict)

    def describe(self) -> str:
        return self.headline


@dataclass(frozen=True)
class FinalRun(Decision):
    """final: how the winner reached the full length (``retrain``, ``extend``, ``grid``, ``confirm``)."""

    stage: ClassVar[str] = "final"
    how: str
    iters: int

    def describe(self) -> str:
        return f"the winner {self.how} to {self.iters} iterations"


@dataclass(frozen=True)
class Looked(Decision):
    """look: the winner's evaluation (run, iteration, top-1, top-5, images, its index page), when it could run."""

    stage: ClassVar[str] = "look"
    evaluation: dict[str, Any] | None = None

    def describe(self) -> str:
        ev = self.evaluation
        return (f"evaluated {ev['run']} @ iteration {ev['iteration']}: top-1 {ev['top1']:.4f} on {ev['images']} "
                f"images") if ev else ""


DECISIONS: dict[str, type[Decision]] = {d.stage: d for d in (Measured, SanityCheck, LrRange, Searched, Confirmed,
                                                              FinalRun, Looked)}


def decision_of(stage: str, raw: dict[str, Any] | None) -> Decision | None:
    """A stage's decision as ``tune.json`` holds it, typed (None: not decided yet)."""
    return DECISIONS[stage].from_json(raw) if raw else None
