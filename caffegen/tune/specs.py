"""The spec of each stage ``caffegen tune`` runs, as TOML tables (pure): written into the tune folder, so anyone can
rerun or tweak a stage with ``caffegen sweep``, and parsed by the sweep engine like any spec."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..prototxt.options import coverage
from ..prototxt.schedule import POLICIES
from .budget import SEARCH_FIRST_RUNG

__all__ = ["TuneNet", "base_tables", "search_tables", "scan_tables", "prior_seed_sd", "FALLBACK_RANGE",
           "confirm_tables",
           "final_tables", "test_batch_for", "lr_range", "lr_within", "template_net", "spec_tables", "SPEC_TABLES", "TUNE_OWNED",
           "tpe_startup", "TUNE_SCHEDULES",
           "in_tune_terms", "size_text"]

# The template net at the default sweep's fast size (the seed's net, resize 44 -> crop 40, BatchNorm): what a tune
# without a NET trains (docs/sweep.md: why the default sweep looks the way it does).
TEMPLATE_NET = {"resize": 44, "test_resize": 40, "crop": 40, "batchnorm": True, "train_batch": 16}
# The schedules a tune searches by default: Caffe's seven and the chained schedules that did best beside them
# (bench/schedules: linear, cosine, onecycle). With them in its space the tune's P(regret <= 1 sd) rose on every bench
# problem at a tenth of the (larger) repeated grid's compute (bench/tune --levers).
TUNE_SCHEDULES: tuple[str, ...] = POLICIES + ("linear", "cosine", "onecycle")
TEST_PASSES_SEARCH = 6     # test passes per search/confirm run: the rungs of eta = 3 halving fall on them
TEST_PASSES_FINAL = 12


@dataclass(frozen=True)
class TuneNet:
    """The net a tune trains: the template (``prototxt`` None) or your own, with its weights and base solver, and
    the size it trains at (``--resize``, ``--crop``, ``--batch``; None: the net's own)."""

    prototxt: str | None = None
    weights: str | None = None
    solver: str | None = None
    num_classes: int | None = None     # your own net resized to the data's classes (None: it matches)
    data: str = "keep"                 # "imagedata": its LMDB Data layers read the tune's lists instead
    resize: int | None = None
    crop: int | None = None
    batch: int | None = None
    reduced: bool = False              # --crop / --resize given: the net trains at another size than its own

    def size(self) -> dict[str, Any]:
        """The ``[net]`` keys of the size this net trains at (for the template: its resize, crop and batch)."""
        out: dict[str, Any] = {}
        if self.prototxt is None:
            if self.crop or self.resize:
                crop = self.crop or max(1, round(self.resize / TEMPLATE_RATIO))
                out.update(crop=crop, test_resize=crop, resize=self.resize or max(crop, round(crop * TEMPLATE_RATIO)))
        else:
            out.update({k: v for k, v in (("resize", self.resize), ("crop", self.crop)) if v})
            if self.data == "imagedata":
                out["data"] = "imagedata"
        if self.batch:
            out["train_batch"] = self.batch
        return out


TEMPLATE_RATIO = TEMPLATE_NET["resize"] / TEMPLATE_NET["crop"]   # the template's resize / crop (44 / 40)

# What ``--spec FILE`` may set: the tables a sweep has that every stage of a tune shares; the keys the tune sets
# itself are refused with the flag that sets them.
SPEC_TABLES = ("data", "net", "solver", "run")
TUNE_OWNED = {
    "data": {k: "--data" for k in ("demo", "root", "train_list", "val_list", "train_lmdb", "val_lmdb", "classes",
                                   "per_class")} | {"val_fraction": "--data (the tune splits a folder 8:2)"},
    "net": {"prototxt": "NET", "weights": "--weights", "num_classes": "NET (the tune fits its classifier to --data)",
            "data": "NET (the tune feeds a Data-layer net its lists itself)"},
    "solver": {"base": "--solver", "max_iter": "--iters / --search-iters", "test_interval": "--iters",
               "base_lr": "the tune (it searches base_lr)", "lr_policy": "--policies",
               "random_seed": "the tune (its stages set the seeds)"},
    "run": {"backend": "--backend", "address": "--address", "jobs": "--jobs", "gpus": "--gpus"},
}


# A sweep's words for what a tune sets by a flag: every refusal a tune gives names a flag of ``caffegen tune``.
TUNE_TERMS = (("set [net] data = \"imagedata\" (the sweep's lists, resized to match)",
               "give --data an image folder or two lists (resized to match)"),
              ("[net] crop", "--crop"), ("[net] resize", "--resize"), ("[net] train_batch", "--batch"),
              ("set [net] mean = ", "give --spec FILE with [net] mean = "))


def in_tune_terms(message: str) -> str:
    """``message`` with the spec keys a tune sets by its flags named by those flags."""
    for spec_words, flag in TUNE_TERMS:
        message = message.replace(spec_words, flag)
    return message


def spec_tables(path: str | None) -> dict[str, dict[str, Any]]:
    """``--spec FILE``'s tables: the same ``[data]``, ``[net]``, ``[solver]``, ``[run]`` a sweep takes, for what the
    tune's flags do not set. A table or key the tune does not take: one InputError line naming the flag to use."""
    import tomllib

    if path is None:
        return {}
    p = Path(path).expanduser()
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--spec {p}: no such file") from None
    except (OSError, ValueError) as exc:       # (TOMLDecodeError and UnicodeDecodeError are ValueErrors)
        raise InputError(f"--spec {p}: not a readable TOML file ({exc})") from None
    for key, value in raw.items():
        if key not in SPEC_TABLES or not isinstance(value, dict):
            raise InputError(f"--spec {p}: {'[' + key + ']' if isinstance(value, dict) else repr(key)} is not used by "
                             f"caffegen tune: it takes the tables {', '.join(f'[{t}]' for t in SPEC_TABLES)} (the "
                             "search, the grid and the name are the tune's own)")
        for k in value:
            if k in TUNE_OWNED[key]:
                raise InputError(f"--spec {p}: [{key}] {k} is set by {TUNE_OWNED[key][k]}, not the spec file")
    return {k: dict(v) for k, v in raw.items()}


def test_batch_for(val_images: int, near: int = 20) -> int:
    """A TEST batch that covers the val set exactly once per test pass, near ``near`` (prototxt.options'
    coverage rule)."""
    return coverage(val_images, math.ceil(val_images / near), near).exact_batch


def template_net(classes: int, val_images: int) -> dict[str, Any]:
    return {**TEMPLATE_NET, "num_classes": classes, "test_batch": test_batch_for(val_images)}


def interval(iters: int, passes: int) -> int:
    return max(1, iters // passes)


def base_tables(name: str, data: dict[str, str], net: TuneNet, *, classes: int, val_images: int, iters: int,
                passes: int, run: dict[str, Any], extra: dict[str, dict[str, Any]] | None = None,
                seed: int = 0) -> dict[str, Any]:
    """The tables every stage shares: the data (``[data]``'s keys: the tune's own lists, or two LMDBs), the net at
    its size, the solver (``iters`` with ``passes`` test passes, random_seed ``seed``: the tune's --seed; the
    confirm's fresh seeds follow it), how to run; ``extra``: ``--spec``'s tables (the tune's defaults < the file <
    the flags)."""
    extra = extra or {}
    if net.prototxt is None:
        net_table = template_net(classes, val_images)
        solver = {"momentum": 0.9, "weight_decay": 0.0005}
    else:
        net_table = {"prototxt": net.prototxt, **({"weights": net.weights} if net.weights else {}),
                     **({"num_classes": net.num_classes} if net.num_classes else {})}
        solver = {"base": net.solver} if net.solver else {}
    net_table = {**net_table, **extra.get("net", {}), **net.size()}
    if net.batch:       # the TEST batch follows the coverage rule, near the train batch
        net_table["test_batch"] = test_batch_for(val_images, net.batch)
    solver = {**solver, **extra.get("solver", {}), "max_iter": iters, "test_interval": interval(iters, passes),
              "random_seed": seed}
    solver.setdefault("display", max(1, iters // 20))
    data = {**extra.get("data", {}), **{k: str(v) for k, v in data.items()}}
    return {"name": name, "data": data, "net": net_table, "solver": solver, "run": {**extra.get("run", {}), **run}}


FALLBACK_RANGE = (1e-4, 0.1)   # the seed's range, when the range test had too few finite losses to suggest a rate


def lr_range(suggested: float, blew_up_at: float | None) -> tuple[float, float]:
    """The base_lr range the search covers around the range test's suggestion: a decade either side (seed 002's x10
    moves; a single suggestion is known to be unreliable), never past a third of where the loss blew up."""
    low, high = suggested / 10, suggested * 10
    if blew_up_at:
        high = min(high, blew_up_at / 3)
    if high <= low:
        high = low * 10
    return float(f"{low:.3g}"), float(f"{high:.3g}")


def lr_within(low: float, high: float, blew_up_at: float | None) -> tuple[float, float]:
    """How far the search's range may follow its best trials (:mod:`caffegen.sweep.ranges`): a decade past either end
    of :func:`lr_range`, never past a third of where the loss blew up. The range test's valley is a guess that can
    sit a decade low (the demo's best rates are 15-40x its valley, its range ends 10x above): the trials correct it."""
    top = high * 10
    if blew_up_at:
        top = max(high, min(top, blew_up_at / 3))
    return float(f"{low / 10:.3g}"), float(f"{top:.3g}")


def prior_seed_sd(val_images: int) -> float:
    """The seed-to-seed sd of a top-1 the search's pruner assumes before any repeat is run: twice the binomial sd
    of a top-1 near 0.5 on ``val_images`` (the seed noise measured on the bench problems runs at 1.5-3x the
    binomial: docs/BENCHMARKS.md), so a run is cut only when it is behind beyond both."""
    return round(2 * math.sqrt(0.25 / max(1, val_images)), 4)


def tpe_startup(trials: int) -> int:
    """TPE's random trials before its model: a third of the search's trials, 3 to Optuna's 10. Optuna's default 10
    left a 14-trial search 4 model-guided trials; the replay chose the third (bench/tune --levers)."""
    return min(10, max(3, trials // 3))


def search_tables(base: dict[str, Any], *, lr: tuple[float, float], policies: list[str], trials: int,
                  seconds: float, seed: int, seed_sd: float | None = None, within: tuple[float, float] | None = None,
                  first_rung: float | None = SEARCH_FIRST_RUNG, startup: int | None = None,
                  run_s: float | None = None) -> dict[str, Any]:
    """TPE over base_lr (log) x the schedules, pruned by the noise pruner (with the seed noise ``seed_sd`` beside
    the val set's) from ``first_rung`` of the run on (None: the pruner's own first rung), its base_lr range following
    its best trials ``within`` these bounds (None: fixed), its model from
    :func:`tpe_startup` random trials on (of the trials ``seconds`` buys at ``run_s`` a run; ``startup``: another
    number), within a compute budget."""
    first = {} if first_rung is None else {"min_resource": max(1, math.ceil(base["solver"]["max_iter"] * first_rung))}
    return {**base, "search": {"sampler": "tpe", "trials": trials, "seed": seed, "pruner": "noise",
                               "startup": startup or tpe_startup(min(trials, int(seconds // run_s) if run_s else trials)),
                               "reduction_factor": 3, **first, "seconds": round(seconds, 1),
                               **({"seed_sd": seed_sd} if seed_sd else {}),
                               "space": {"base_lr": {"low": lr[0], "high": lr[1], "log": True,
                                                     **({"within": list(within)} if within else {})},
                                         "lr_policy": list(policies)}}}


def confirm_tables(base: dict[str, Any], points: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """The candidates, listed point by point, run with one more random seed."""
    return {**base, "grid": {"points": [dict(p) for p in points], "random_seed": [seed]}}


def scan_tables(base: dict[str, Any], rates: list[float], policies: list[str]) -> dict[str, Any]:
    """The rate scan: every rate x the scanned schedules at the full length, the solver's seed (one for all: the
    rates are compared on the same seed)."""
    return {**base, "name": "search", "grid": {"base_lr": list(rates), "lr_policy": list(policies)}}


def final_tables(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """The winner at the full length."""
    return {**base, "grid": {"points": [dict(point)]}}


def size_text(net: TuneNet) -> str:
    """The size a tune trains at, as the plan says it."""
    size = net.size()
    if net.prototxt is None:
        size = {**{k: TEMPLATE_NET[k] for k in ("resize", "crop", "train_batch")}, **size}
    parts = [f"{k.replace('train_', '')} {size[k]}" for k in ("resize", "crop", "train_batch") if size.get(k)]
    what = "the template net" if net.prototxt is None else Path(net.prototxt).name
    own = "" if net.prototxt is None else " (the rest the net's own)" if parts else " its own size"
    return f"{what}{': ' + ', '.join(parts) if parts else ''}{own}" + (
        "; a winner found at a reduced size is a candidate for the full size, not a proof" if net.prototxt and
        net.reduced else "")
