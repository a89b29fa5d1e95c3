"""Sweep specs: one TOML file -> a list of variants (one ``caffe train`` each).

A spec has five tables (see ``caffegen/specs/default.toml`` for a commented example):

- ``[data]``   where images come from: ``demo = {...}`` (the embedded synthetic set), ``root`` (a
  folder per class, or a CSV), or ready ``train_list``/``val_list`` files;
- ``[net]``    :class:`~caffegen.prototxt.options.NetOptions` fields shared by every variant;
- ``[solver]`` :class:`~caffegen.prototxt.options.SolverOptions` fields shared by every variant;
- ``[grid]``   the axes: each key is a solver field (``base_lr``, ``lr_policy``, ``weight_decay``...)
  or ``net.<field>`` (``net.dropout``, ``net.train_batch``...), or ``data.augment`` (augmentation presets or
  specs), each value a list (``lr_policy`` also takes ``"all"``); the sweep is their cross product;
- ``[run]``    how to run: ``jobs``, ``gpus``, ``per_gpu``, ``timeout``, ``early_stop``,
  ``diverge_factor``.

Everything here is pure: parsing and expansion have no side effects, so a spec can be checked
(``caffegen sweep --dry-run``) before anything is written. :func:`parse_spec` expands the grid once, into
``SweepSpec.variants``; everything downstream reads that list.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..data.augment import parse_augment
from ..data.sources import DataSpec
from ..errors import InputError
from ..checks import nearest
from ..prototxt.basesolver import OWNED, load_solver, repeated, solver_fields, variant_solver
from ..prototxt.options import NetOptions, SolverOptions, variant_name
from ..prototxt.usernet import UserNet
from ..run.backends import BACKENDS
from ..run.stops import DIVERGE_FACTOR, STOP_GRACE_S, Decision, StopRule, run_stops
from .search import SearchSpec, parse_search
from .values import field_types, typed, typed_proto, typed_table
from ..prototxt.chains import parse_schedules

SHIPPED = ("default", "smoke", "search")  # specs shipped in caffegen/specs/, usable by name


@dataclass(frozen=True)
class RunSettings:
    """How the driver runs the variants (not part of any variant's identity)."""

    jobs: int | None = None          # parallel CPU runs [default: min(2, cores)]
    gpus: tuple[int, ...] = ()       # GPU ids; one run per GPU (x per_gpu)
    per_gpu: int = 1
    timeout: float | None = None     # seconds per run; then it is stopped (snapshot kept) as `timeout`
    early_stop: int = 0              # test passes without a gain in the ranking metric before a stop; 0 = off
    diverge_factor: float = DIVERGE_FACTOR   # a loss above factor x the first loss is an explosion
    stop_grace: float = STOP_GRACE_S         # seconds a caffe asked to stop may take to snapshot before it is killed
    metric: str | None = None        # what ranks runs and drives early stop [default: the net's top-1]
    keep_best: int = 1               # snapshots kept nearest the best test top-1 (beside the newest, for resume)
    backend: str = "local"           # where runs execute: "local" (child processes) or "ray" (a Ray cluster)
    address: str | None = None       # ray: "auto" or HOST:PORT of the cluster [default: $RAY_ADDRESS, else a local one]
    retries: int = 2                 # ray: times a run lost with its node is retried in the sweep (Ray Tune's max_failures)

    def stops(self, metric: str | None, judge: Callable[[int, float], Decision | None] | None = None) -> list[StopRule]:
        """A run's stop rules from these settings (what a sweep's runs and an extension alike are stopped by), its
        pruner's ``judge`` told each whole test pass when searching."""
        return run_stops(metric, diverge_factor=self.diverge_factor, early_stop=self.early_stop, timeout=self.timeout,
                         judge=judge)


@dataclass(frozen=True)
class Variant:
    """One run: a stable readable name and the parameters that differ from the shared ones. With repeats, the runs
    of one grid point share its ``group`` name and differ only in ``seed`` (their random_seed)."""

    name: str
    axes: dict[str, Any]                   # grid values of this variant, e.g. {"base_lr": 0.01, "lr_policy": "step"}
    net: dict[str, Any] = field(default_factory=dict)      # NetOptions overrides (shared + grid)
    solver: dict[str, Any] = field(default_factory=dict)   # SolverOptions overrides (shared + grid)
    group: str = ""                        # the grid point's name (= name without repeats)
    seed: int | None = None                # the repeat's random_seed (None: not a repeated sweep)
    data: dict[str, Any] = field(default_factory=dict)     # [data] overrides of this variant: {"augment": ...}

    def params(self) -> dict[str, Any]:
        """Everything that defines the run; a resumed directory must match it exactly."""
        return {"net": self.net, "solver": self.solver, **({"data": self.data} if self.data else {})}


@dataclass(frozen=True)
class SweepSpec:
    name: str
    data: DataSpec
    net: dict[str, Any]
    solver: dict[str, Any]
    grid: dict[str, list[Any]]
    run: RunSettings
    source: str = "<memory>"
    base_solver: str | None = None      # [solver] base: the user's solver.prototxt (user nets only)
    seeds: tuple[int, ...] = ()         # the repeats' random seeds ([grid] repeats or random_seed); () = no repeats
    search: SearchSpec | None = None    # [search]: a sampler choosing the runs, and/or a pruner stopping them
    variants: tuple[Variant, ...] = ()   # the grid, expanded once by parse_spec
    points: tuple[dict[str, Any], ...] = ()   # [grid] points: the variants listed one by one, not a product

    @property
    def user_net(self) -> bool:
        """True when ``[net]`` names the user's own prototxt instead of template options."""
        return "prototxt" in self.net

    def fingerprint(self) -> str:
        blob = json.dumps({"data": dataclasses.asdict(self.data), "net": self.net, "solver": self.solver,
                           "grid": self.grid, "base_solver": self.base_solver, "seeds": self.seeds,
                           **({"points": self.points} if self.points else {}),
                           "search": dataclasses.asdict(self.search) if self.search else None}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shipped_path(name: str) -> Path:
    return Path(str(resources.files("caffegen") / "specs" / f"{name}.toml"))


def resolve_spec_path(arg: str) -> Path:
    """A spec file path, or the name of a shipped spec (``default``, ``smoke``)."""
    path = Path(arg).expanduser()
    if path.exists():
        return path
    if arg in SHIPPED:
        return _shipped_path(arg)
    raise InputError(f"sweep spec not found: {arg} (give a .toml file or one of: {', '.join(SHIPPED)})")


def load_spec(arg: str | Path) -> SweepSpec:
    path = resolve_spec_path(str(arg))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_spec(raw, source=str(path), default_name=path.stem)


_TOP = {"name", "data", "net", "solver", "grid", "run", "search"}


def parse_spec(raw: dict[str, Any], source: str = "<memory>", default_name: str = "sweep") -> SweepSpec:
    """Check a spec's structure and values; one-line :class:`InputError` naming the key on any problem."""
    unknown = set(raw) - _TOP
    if unknown:
        raise InputError(f"{source}: unknown top-level key {sorted(unknown)[0]!r} (expected: {', '.join(sorted(_TOP))})")
    name = str(raw.get("name", default_name))
    if not name or any(c in name for c in "/\\\0") or name.startswith("."):
        raise InputError(f"{source}: name {name!r} must be a plain folder name")
    here = Path(source).parent if Path(source).is_file() else Path.cwd()  # relative paths: the spec file's folder
    net = dict(raw.get("net", {}))
    user = "prototxt" in net
    data = _section(raw, "data", DataSpec, source)
    _check_data(data, user, source)
    net = _net_table(net, user, here, source)
    solver, base, extra_ok = _solver_table(dict(raw.get("solver", {})), user, here, source)
    net_fields = _USER_FIELDS if user else _NET_FIELDS
    raw_grid = dict(raw.get("grid", {}))
    seeds = _seeds(raw_grid, source)
    axes = _Axes(source, user, net_fields, extra_ok)
    grid, points = axes.grid(raw_grid), axes.points(raw_grid.pop("points", None), raw_grid)
    search = parse_search(raw.get("search"), _searchable(net_fields, user, extra_ok), source)
    if search is not None and search.sampled:
        if grid or points:
            raise InputError(f"{source}: [grid] and [search] sampler = {search.sampler!r} both choose the runs: put "
                             "the axes in [search.space] (or use sampler = \"grid\")")
        if seeds:
            raise InputError(f"{source}: [grid] repeats go with the grid sampler")
    elif not grid and not points:
        raise InputError(f"{source}: [grid] is empty: give at least base_lr = [...]")
    run = _section(raw, "run", RunSettings, source)
    check_run_settings(run, source)
    spec = SweepSpec(name=name, data=data, net=net, solver=solver, grid=grid, run=run, source=source, base_solver=base,
                     seeds=seeds, search=search, points=tuple(points))
    return dataclasses.replace(spec, variants=tuple(expand(spec)))  # checks every combination's options now


def _net_table(net: dict[str, Any], user: bool, here: Path, source: str) -> dict[str, Any]:
    """``[net]``: your own net's table (paths resolved), or the template's options, each typed."""
    if user:
        return _user_net_table(net, here, source)
    for key in net:
        if key not in _NET_FIELDS:
            raise InputError(f"{source}: [net] unknown option {key!r}{nearest(key, _NET_FIELDS)}")
    return typed_table(f"{source}: [net]", net, field_types(NetOptions))


def _solver_table(solver: dict[str, Any], user: bool, here: Path,
                  source: str) -> tuple[dict[str, Any], str | None, set[str]]:
    """``[solver]``: its options typed, the base solver's path, and the SolverParameter fields your own net's
    solver may set beyond the template's options."""
    base = solver.pop("base", None)
    if base is not None:
        if not user:
            raise InputError(f"{source}: [solver] base applies to your own net ([net] prototxt = ...); the template's "
                             "solver options go in [solver] directly")
        base = str(_existing(here, base, "[solver] base", source))
        load_solver(base)  # not a SolverParameter: one line, before anything runs
    extra_ok = _extra_solver_fields() if user else set()
    for key in solver:
        if key not in _SOLVER_FIELDS and key not in extra_ok:
            raise InputError(f"{source}: [solver] unknown option {key!r}{nearest(key, _SOLVER_FIELDS | extra_ok)}")
    return {k: _typed_solver(f"{source}: [solver] {k}", k, v) for k, v in solver.items()}, base, extra_ok


@dataclass(frozen=True)
class _Axes:
    """The ``[grid]`` table's axes (or whole points), each value typed by the field it sets."""

    source: str
    user: bool
    net_fields: set[str]
    extra_ok: set[str]

    def axis(self, key: str, values: Any, where: str) -> list[Any]:
        """One axis's values, checked: a known field (net. prefix for the net's), each value typed by it."""
        source = self.source
        if key == "lr_policy":
            return parse_schedules(values if isinstance(values, str) else ",".join(map(str, values)))
        if not isinstance(values, list) or not values:
            raise InputError(f"{where} must be a non-empty list")
        if key.startswith("data."):
            if key != "data.augment":
                raise InputError(f"{where}: of [data], only data.augment can be an axis")
            for value in values:
                parse_augment(value, f"{source}: [grid] data.augment")
            return list(values)
        target = key[4:] if key.startswith("net.") else key
        fields = self.net_fields if key.startswith("net.") else _SOLVER_FIELDS | self.extra_ok
        if target not in fields or target in ("prototxt",):
            raise InputError(f"{source}: [grid] unknown axis {key!r}{nearest(target, fields)}"
                             " (net options take a net. prefix)")
        if key.startswith("net."):
            types = field_types(UserNet if self.user else NetOptions)
            return [typed(where, v, types[target]) for v in values]
        return [_typed_solver(where, key, v) for v in values]

    def grid(self, raw_grid: dict[str, Any]) -> dict[str, list[Any]]:
        """The axes (``points`` aside), each a list of distinct typed values."""
        grid: dict[str, list[Any]] = {}
        for key, values in raw_grid.items():
            if key == "points":
                continue
            values = self.axis(key, values, f"{self.source}: [grid] {key}")
            if len(set(map(repr, values))) != len(values):
                raise InputError(f"{self.source}: [grid] {key} lists a value twice")
            grid[key] = list(values)
        return grid

    def points(self, raw_points: Any, raw_grid: dict[str, Any]) -> list[dict[str, Any]]:
        """``[grid] points``: whole points, each setting the same keys, none twice (no other axis beside them)."""
        source = self.source
        if raw_points is None:
            return []
        if raw_grid:
            raise InputError(f"{source}: [grid] points lists whole points: give {sorted(raw_grid)[0]} inside each point")
        if not isinstance(raw_points, list) or not raw_points or not all(isinstance(pt, dict) and pt
                                                                         for pt in raw_points):
            raise InputError(f"{source}: [grid] points must be a list of tables, e.g. [{{ base_lr = 0.01, "
                             f"lr_policy = \"step\" }}]")
        keys = list(raw_points[0])
        points = []
        for i, pt in enumerate(raw_points, 1):
            if list(pt) != keys:
                raise InputError(f"{source}: [grid] points: point {i} sets {', '.join(pt)}, the first sets "
                                 f"{', '.join(keys)}: every point sets the same keys")
            points.append({k: self.axis(k, [v] if k != "lr_policy" else v, f"{source}: [grid] points[{i}].{k}")[0]
                           for k, v in pt.items()})
        if len({json.dumps(pt, sort_keys=True) for pt in points}) != len(points):
            raise InputError(f"{source}: [grid] points lists a point twice")
        return points


def _seeds(grid: dict[str, Any], source: str) -> tuple[int, ...]:
    """``[grid] repeats = N`` (seeds 0..N-1) or a ``random_seed`` axis (those seeds): repeats of every grid point,
    never a hyperparameter to rank. Taken out of ``grid``."""
    repeats, axis = grid.pop("repeats", None), grid.pop("random_seed", None)
    if repeats is not None and axis is not None:
        raise InputError(f"{source}: [grid] give repeats = N or random_seed = [...], not both")
    if repeats is not None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise InputError(f"{source}: [grid] repeats must be an integer >= 1, got {repeats!r}")
        return tuple(range(repeats)) if repeats > 1 else ()
    if axis is None:
        return ()
    if not isinstance(axis, list) or not axis or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                         for v in axis):
        raise InputError(f"{source}: [grid] random_seed must be a list of integers >= 0, got {axis!r}")
    if len(set(axis)) != len(axis):
        raise InputError(f"{source}: [grid] random_seed lists a value twice")
    return tuple(axis)


def _searchable(net_fields: set[str], user: bool, extra: set[str]) -> dict[str, str]:
    """Every name a [search.space] may hold, with the type of its values (an annotation: int fields are searched as
    integers)."""
    cls = UserNet if user else NetOptions
    out = {f"net.{name}": kind for name, kind in field_types(cls).items() if name in net_fields and name != "prototxt"}
    out.update({name: kind for name, kind in field_types(SolverOptions).items() if name not in OWNED})
    kinds = {"CPPTYPE_INT32": "int", "CPPTYPE_INT64": "int", "CPPTYPE_UINT32": "int", "CPPTYPE_UINT64": "int",
             "CPPTYPE_BOOL": "bool", "CPPTYPE_STRING": "str", "CPPTYPE_ENUM": "str"}
    fields = solver_fields() if extra else {}
    for name in extra:
        cpp = {v: k for k, v in vars(type(fields[name])).items() if k.startswith("CPPTYPE_")}.get(fields[name].cpp_type)
        out[name] = kinds.get(cpp, "float")
    return out


def _typed_solver(where: str, key: str, value: Any) -> Any:
    """A solver value typed by its SolverOptions field, or (a user net's other solver fields) by Caffe's schema."""
    types = field_types(SolverOptions)
    if key in types:
        return typed(where, value, types[key])
    desc = solver_fields()[key]
    return typed_proto(where, value, desc, repeated(desc))


_NET_FIELDS = {f.name for f in dataclasses.fields(NetOptions)}
_USER_FIELDS = {f.name for f in dataclasses.fields(UserNet)}
_SOLVER_FIELDS = {f.name for f in dataclasses.fields(SolverOptions)}


def _extra_solver_fields() -> set[str]:
    """SolverParameter fields beyond SolverOptions that a user-net sweep may set: Caffe's own scalar fields."""
    fields = solver_fields()
    return {n for n, d in fields.items() if not repeated(d) and d.message_type is None
            and n not in _SOLVER_FIELDS and n not in OWNED}


def _existing(here: Path, value: Any, what: str, source: str) -> Path:
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else here / path
    if not path.exists():
        raise InputError(f"{source}: {what} not found: {path}")
    return path.resolve()


def _user_net_table(net: dict[str, Any], here: Path, source: str) -> dict[str, Any]:
    """``[net]`` of a user-net sweep: only UserNet keys (template options are refused), paths made absolute."""
    for key in net:
        if key not in _USER_FIELDS:
            hint = (f"{key!r} is a template option; with prototxt = ... the net is your file (keys: "
                    f"{', '.join(sorted(_USER_FIELDS))})" if key in _NET_FIELDS
                    else f"unknown option {key!r}{nearest(key, _USER_FIELDS)}")
            raise InputError(f"{source}: [net] {hint}")
    net = typed_table(f"{source}: [net]", net, field_types(UserNet))
    net["prototxt"] = str(_existing(here, net["prototxt"], "[net] prototxt", source))
    if net.get("weights") is not None:
        net["weights"] = str(_existing(here, net["weights"], "[net] weights", source))
    if net.get("root") is not None:
        net["root"] = str(_existing(here, net["root"], "[net] root", source))
    return net


def _check_data(data: DataSpec, user: bool, source: str) -> None:
    given = sum(x is not None for x in (data.demo, data.root, data.train_list))
    lmdb = data.train_lmdb is not None or data.val_lmdb is not None
    if given > 1 or (given == 0 and not user):
        raise InputError(f"{source}: [data] needs exactly one of demo = {{...}}, root = DIR, train_list = FILE")
    if lmdb and not user:
        raise InputError(f"{source}: [data] train_lmdb/val_lmdb apply to your own net ([net] prototxt); the template "
                         "net reads LMDBs with net.backend = \"lmdb\"")
    if lmdb and (data.train_lmdb is None or data.val_lmdb is None):
        raise InputError(f"{source}: [data] train_lmdb and val_lmdb go together")
    if data.demo is not None:
        import inspect

        from ..data.demo import generate

        allowed = [k for k in inspect.signature(generate).parameters if k != "out_dir"]
        if not isinstance(data.demo, dict) or set(data.demo) - set(allowed):
            raise InputError(f"{source}: [data] demo must be a table of {', '.join(allowed)}, got {data.demo!r}")
    if data.train_list and not data.val_list:
        raise InputError(f"{source}: [data] train_list needs val_list too")
    if data.augment is not None:
        if given == 0:
            raise InputError(f"{source}: [data] augment needs image lists (demo, root or train_list) to augment")
        parse_augment(data.augment, f"{source}: [data] augment")


def _section(raw: dict[str, Any], table: str, cls: type, source: str) -> Any:
    """``[table]`` of the spec as ``cls``: unknown keys and values of the wrong type are one-line errors."""
    values = raw.get(table, {})
    if not isinstance(values, dict):
        raise InputError(f"{source}: [{table}] must be a table, got {values!r}")
    fields = field_types(cls)
    for key in values:
        if key not in fields:
            raise InputError(f"{source}: [{table}] unknown key {key!r}{nearest(key, set(fields))} "
                             f"(expected: {', '.join(sorted(fields))})")
    return cls(**typed_table(f"{source}: [{table}]", values, fields))


def check_run_settings(run: RunSettings, where: str) -> None:
    if run.jobs is not None and run.jobs < 1:
        raise InputError(f"{where}: jobs must be >= 1, got {run.jobs}")
    if run.per_gpu < 1:
        raise InputError(f"{where}: per_gpu must be >= 1, got {run.per_gpu}")
    if run.timeout is not None and run.timeout <= 0:
        raise InputError(f"{where}: timeout must be > 0 seconds, got {run.timeout}")
    if run.early_stop < 0:
        raise InputError(f"{where}: early_stop must be >= 0, got {run.early_stop}")
    if run.stop_grace <= 0:
        raise InputError(f"{where}: stop_grace must be > 0 seconds, got {run.stop_grace}")
    if run.keep_best < 0:
        raise InputError(f"{where}: keep_best must be >= 0, got {run.keep_best}")
    if run.diverge_factor <= 1:
        raise InputError(f"{where}: diverge_factor must be > 1, got {run.diverge_factor}")
    if run.backend not in BACKENDS:
        raise InputError(f"{where}: backend must be one of {', '.join(BACKENDS)}, got {run.backend!r}"
                         f"{nearest(run.backend, set(BACKENDS))}")
    if run.address is not None and not BACKENDS[run.backend].address:
        raise InputError(f"{where}: address {run.address!r} is the address of a Ray cluster: it needs backend = \"ray\" "
                         "(--backend ray)")
    if run.retries < 0:
        raise InputError(f"{where}: retries must be >= 0, got {run.retries}")


def point(spec: SweepSpec, axes: dict[str, Any], base=None, name: str | None = None) -> tuple[dict, dict]:
    """The net and solver values of one point of the spec's space (``axes``: solver fields, ``net.<field>``), checked
    by building its options (one InputError line naming the point). ``data.`` axes are the variant's own."""
    net, solver = dict(spec.net), dict(spec.solver)
    for key, value in axes.items():
        if key.startswith("data."):
            continue
        if key.startswith("net."):
            net[key[4:]] = value
        else:
            solver[key] = value
    try:
        (UserNet if spec.user_net else NetOptions)(**net)
        SolverOptions(**variant_solver(solver, base)[0])
    except (InputError, TypeError) as exc:
        raise InputError(f"{spec.source}: variant {name or variant_name(axes)}: {exc}") from None
    return net, solver


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid's points (axes -> value): the cross product of the axes, base_lr first, then lr_policy, then the
    others in spec order; or the ``[grid] points`` as listed."""
    if spec.points:
        return [dict(pt) for pt in spec.points]
    order = [k for k in ("base_lr", "lr_policy") if k in spec.grid] + \
            [k for k in spec.grid if k not in ("base_lr", "lr_policy")]
    return [dict(zip(order, combo)) for combo in itertools.product(*(spec.grid[k] for k in order))] \
        if spec.grid else []


def grid_space(spec: SweepSpec) -> dict[str, list[Any]]:
    """Each axis with the values the grid's points take (what a study over the grid is told of it)."""
    space: dict[str, list[Any]] = {}
    for pt in grid_points(spec):
        for k, v in pt.items():
            if v not in space.setdefault(k, []):
                space[k].append(v)
    return {**space, **({"random_seed": list(spec.seeds)} if spec.seeds else {})}


def expand(spec: SweepSpec) -> list[Variant]:
    """Every point of the grid (:func:`grid_points`), each once per seed of a repeated sweep
    (``lr0.01_step_seed0``, ``lr0.01_step_seed1``)."""
    variants = []
    seen: set[str] = set()
    base = load_solver(spec.base_solver) if spec.base_solver else None
    for axes in grid_points(spec):
        net, solver = point(spec, axes, base)
        group = variant_name(axes)
        if group in seen:
            raise InputError(f"{spec.source}: two variants would share the folder {group}")
        seen.add(group)
        data = {k[5:]: v for k, v in axes.items() if k.startswith("data.")}
        if not spec.seeds:
            variants.append(Variant(name=group, axes=axes, net=net, solver=solver, group=group, data=data))
        for seed in spec.seeds:  # the repeats of this grid point, one folder each
            variants.append(Variant(name=f"{group}_seed{seed}", axes=axes, net=net,
                                    solver={**solver, "random_seed": seed}, group=group, seed=seed, data=data))
    return variants
