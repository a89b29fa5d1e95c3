"""``tune.json``: what a tune decided and spent, stage by stage, written atomically after every change, so that a
rerun of the same command resumes where it stopped (a finished stage is not run again; its decision is reused) and
the same folder with other arguments is refused."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..layout import TUNE_STATE
from ..paths import write_atomic

__all__ = ["TuneState", "STATE", "FORMAT"]

STATE = TUNE_STATE
FORMAT = 2      # 2: typed stage decisions (.decisions), the same JSON shapes as 1 (which had no "format" key)


@dataclass
class TuneState:
    path: Path
    args: dict[str, Any]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    created: str = ""

    @classmethod
    def open(cls, folder: Path, args: dict[str, Any]) -> TuneState:
        """The folder's state, or a new one; another tune's folder (other arguments) is one error line."""
        path = Path(folder) / STATE
        if path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(f"{path}: not a readable tune state ({exc}); use another --out") from None
            if not isinstance(raw.get("format", 1), int) or raw.get("format", 1) > FORMAT:
                raise InputError(f"{path}: a tune state of format {raw.get('format')!r}, written by a newer caffegen "
                                 f"(this one reads format {FORMAT} and older); use that caffegen, or another --out")
            if raw.get("args") != args:
                old, new = raw.get("args") or {}, args
                key = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), "?")
                raise InputError(f"{folder} holds a tune with other arguments ({key}: {old.get(key)!r} there, "
                                 f"{new.get(key)!r} now): rerun it with the same ones, or use another --out")
            return cls(path, args, raw.get("stages") or {}, raw.get("plan"), raw.get("created", ""))
        state = cls(path, args, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        state.save()
        return state

    def stage(self, name: str) -> dict[str, Any]:
        return self.stages.setdefault(name, {"status": "pending", "spent_s": 0.0, "compute_s": 0.0})

    def done(self, name: str) -> bool:
        return self.stages.get(name, {}).get("status") == "done"

    def spent(self, name: str | None = None) -> float:
        """Wall seconds spent (one stage, or all of them): summed over the attempts, a pause between them not
        counted."""
        if name is not None:
            return float(self.stages.get(name, {}).get("spent_s", 0.0))
        return sum(float(s.get("spent_s", 0.0)) for s in self.stages.values())

    def save(self) -> None:
        write_atomic(self.path, json.dumps({"format": FORMAT, "args": self.args, "created": self.created, "plan": self.plan,
                                            "stages": self.stages}, indent=2, default=str) + "\n")
