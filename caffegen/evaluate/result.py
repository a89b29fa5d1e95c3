"""One evaluated snapshot: what :mod:`.evaluation` measures and :mod:`.writers` writes (its own module, so that
neither imports the other)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .forward import Scores

__all__ = ["Evaluation"]


@dataclass
class Evaluation:
    """One evaluated snapshot: where it came from, the scores, and the measures derived from them."""

    run_dir: Path
    iteration: int
    weights: Path
    list_file: Path | None
    names: list[str]
    scores: Scores
    paths: list[str]                          # image i's file (empty for an LMDB)
    caffe_test: dict[str, Any] | None = None  # the log's test pass at this iteration, on the same images
    measures: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    @property
    def images(self) -> int:
        return len(self.scores.labels)

    @property
    def top1(self) -> float:
        return self.measures["top1"]

    @property
    def top5(self) -> float | None:
        return self.measures["top5"]
