"""``caffegen tune``: from a net and an image folder to a trusted answer, in the order an expert works (seeds 001-003).

    measure  a short real run times this net on this hardware: the plan and its budget are printed first;
    sanity   can the net overfit a tiny subset? (a FAIL stops here, with its causes);
    lr-find  the range test sets the decade(s) of base_lr to search;
    search   TPE over base_lr x the schedules, pruned only beyond the val set's noise (``sweep.pruning``);
    confirm  the best few repeated with more seeds, round by round, until the pooled seed-noise test separates a
             winner (Hsu's comparisons with the best) or the stage's budget ends: then the verdict says "tied";
    final    the winner retrained (or extended) to the full length;
    look     it evaluated per class, every stage's report, a TensorBoard log, the tune's own report (plan and bill).

Every stage is an ordinary sweep or probe whose spec is written into the folder (``specs/``), and every decision goes
into ``tune.json`` with its numbers: a rerun of the same command resumes, a finished stage is reused, and another
tune's arguments on the same folder are refused.
"""
from __future__ import annotations

import math
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CaffegenError, InputError, Interrupted, ValidationError
from ..layout import REPORT_HTML, SWEEP_DB, TENSORBOARD, default_out, study_storage
from ..logs.curves import metric_label
from ..paths import exclusive
from ..prototxt.options import variant_name
from ..prototxt.schedule import POLICIES
from ..prototxt.usernet import MATCHING_RESIZE
from ..run.status import PRUNED, WITH_RESULT
from ..toolchain import CaffeInstall
from .budget import (CONFIRM_CANDIDATES, CONFIRM_FULL, CONFIRM_ROUNDS, DEFAULT_BUDGET, DISTINCT_CANDIDATES,
                     GRID_REPEATS, Plan, Speed, confirm_round_fits, duration, grid_lrs, make_plan, parse_budget,
                     search_seconds)
from .decide import SearchOutcome, candidates, choose, confirm_round
from .specs import (FALLBACK_RANGE, TEMPLATE_NET, TEST_PASSES_FINAL, TEST_PASSES_SEARCH, TuneNet, base_tables,
                    confirm_tables, final_tables, in_tune_terms, lr_range, prior_seed_sd, search_tables, spec_tables,
                    test_batch_for)
from .state import TuneState

__all__ = ["TuneOptions", "TuneResult", "tune", "STAGES"]

STAGES = ("measure", "sanity", "lr-find", "search", "confirm", "final", "look")
FINALS = ("retrain", "extend", "none")
SANITY_ITERS = 300
SANITY_RETRIES = 2     # a sanity run whose loss blows up is tried again at x0.1, this many times (seed 002)
LRFIND_ITERS = 100
DEFAULT_EPOCHS = 6


@dataclass(frozen=True)
class TuneOptions:
    """What ``caffegen tune`` was asked (the CLI's options; the library takes the same)."""

    data: str                                  # an image folder (a folder per class) or "TRAIN_LIST,VAL_LIST"
    net: str | None = None                     # your train_val.prototxt (None: the template net)
    weights: str | None = None
    solver: str | None = None                  # your base solver.prototxt
    budget: str = DEFAULT_BUDGET
    out: Path = default_out("tune")
    iters: int | None = None                   # the full length [default: 6 epochs]
    search_iters: int | None = None            # the search's and confirm's length [default: iters / 3]
    final: str = "retrain"
    sanity: bool = True
    seed: int = 0                              # the search's sampler seed
    policies: tuple[str, ...] = POLICIES
    val_fraction: float = 0.2
    jobs: int | None = None
    gpus: tuple[int, ...] = ()
    backend: str = "local"
    address: str | None = None
    resize: int | None = None                  # the size it trains at: --resize, --crop, --batch (None: the net's own)
    crop: int | None = None
    batch: int | None = None
    spec: str | None = None                    # --spec FILE: [data], [net], [solver], [run] for the rest

    def identity(self) -> dict[str, Any]:
        """What defines the tune (a rerun must match it): not where or how wide it runs; paths absolute (a rerun
        from another folder names the same files)."""
        return {k: (str(v.resolve()) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if k not in ("out", "jobs", "gpus", "backend", "address")}


@dataclass
class TuneResult:
    out: Path
    exit_code: int = 0
    message: str = ""
    winner: dict[str, Any] | None = None
    report: Path | None = None
    bill: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TuneData:
    """What a tune trains on: ``tables``, the ``[data]`` keys every stage's spec reads (the tune's lists, or two
    LMDBs), with the classes and images they hold."""

    tables: dict[str, str]
    classes: int
    train_images: int
    val_images: int
    lmdb: bool = False


class _Interrupt(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _resolve(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    return str(p.resolve())


class Tuner:
    def __init__(self, opts: TuneOptions, caffe: CaffeInstall, log: Callable[[str], None], display: Any = None):
        self.opts, self.caffe, self.log, self.display = opts, caffe, log, display
        self.out = Path(opts.out)
        self.stage_t0 = time.time()   # when the stage now running started

    # -- the pieces every stage uses
    def _write_spec(self, name: str, tables: dict[str, Any]):
        import tomli_w

        from ..sweep.spec import load_spec

        path = self.out / "specs" / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f"# written by caffegen tune: rerun or tweak this stage with `caffegen sweep {path}`\n"
        path.write_text(text + tomli_w.dumps(tables), encoding="utf-8")
        return load_spec(path)

    def _run_table(self) -> dict[str, Any]:
        o = self.opts
        run: dict[str, Any] = {"backend": o.backend}
        if o.jobs:
            run["jobs"] = o.jobs
        if o.gpus:
            run["gpus"] = list(o.gpus)
        if o.address:
            run["address"] = o.address
        return run

    def _stage(self, name: str):
        """Context of a stage: its wall time added to the state even when it is interrupted."""
        tuner = self

        class Timed:
            def __enter__(self):
                self.t0 = tuner.stage_t0 = time.time()
                entry = tuner.state.stage(name)
                entry["status"] = "running"
                tuner.state.save()
                i = STAGES.index(name) + 1
                tuner.log(f"[tune] stage {i}/{len(STAGES)}: {name}")
                return entry

            def __exit__(self, kind, exc, tb):
                entry = tuner.state.stage(name)
                entry["spent_s"] = round(entry.get("spent_s", 0.0) + time.time() - self.t0, 3)
                if kind is None:
                    entry["status"] = "done"
                tuner.state.save()
                from .report import write_tune_report

                write_tune_report(tuner.out, tuner.state)   # the report follows the stages as they end
                return False

        return Timed()

    def _sweep(self, spec, out: Path, stage: str) -> Any:
        from ..sweep.driver import run_sweep

        res = run_sweep(spec, out, spec.run, caffe=self.caffe, display=self.display, log=self.log,
                        live_report=True, tensorboard=self.out / TENSORBOARD / out.relative_to(self.out))
        entry = self.state.stage(stage)
        entry["compute_s"] = round(entry.get("compute_s", 0.0) + _compute(out), 3)
        if res.interrupted or res.error:
            raise _Interrupt(res.exit_code, f"stage {stage} stopped: "
                             + (res.error or f"interrupted by {signal.Signals(res.signal).name}")
                             + "; rerun the same command to resume")
        return res

    # -- the stages
    def run(self) -> TuneResult:
        o = self.opts
        if o.final not in FINALS:
            raise InputError(f"--final must be one of {', '.join(FINALS)}, got {o.final!r}")
        self.budget = parse_budget(o.budget)
        created = self.out.absolute()   # the outermost folder this tune creates (None: it exists: a resume)
        while not created.parent.exists():
            created = created.parent
        created = None if created.exists() else created
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with exclusive(self.out / ".tune.lock", f"another caffegen tune (pid {{pid}}) is running in {self.out}"):
                self.state = TuneState.open(self.out, o.identity())
                try:
                    return self._run()
                except _Interrupt as exc:
                    return TuneResult(self.out, exc.code, str(exc))
                except Interrupted as exc:
                    return TuneResult(self.out, exc.exit_code, f"{exc}; rerun the same command to resume")
        except (InputError, ValidationError) as exc:
            if created is not None:   # refused (a bad net, data or budget): a new folder is not left half made
                shutil.rmtree(created, ignore_errors=True)
            if type(exc) is InputError:     # the sweep's words for what a tune sets by a flag: the flag's
                raise InputError(in_tune_terms(str(exc))) from None
            raise

    def _data(self) -> TuneData:
        """What the stages train on: the tune's own lists (made once in its folder: a folder split 8:2, or the lists
        given), or two LMDBs given as they are."""
        from ..data.prepare import is_lmdb, lmdb_labels
        from ..data.sources import DataSpec, prepare_data

        o = self.opts
        if "," in o.data:
            train, val = (s.strip() for s in o.data.split(",", 1))
            if is_lmdb(Path(train).expanduser()) and is_lmdb(Path(val).expanduser()):
                train, val = _resolve(train, "--data train LMDB"), _resolve(val, "--data val LMDB")
                counts = lmdb_labels(train)
                val_images = sum(lmdb_labels(val).values())
                if len(counts) < 2:
                    raise InputError(f"--data {train}: {len(counts)} label found; tuning a classifier needs two or more")
                return TuneData({"train_lmdb": train, "val_lmdb": val}, max(counts) + 1, sum(counts.values()),
                                val_images, lmdb=True)
            spec = DataSpec(train_list=_resolve(train, "--data train list"), val_list=_resolve(val, "--data val list"))
        else:
            root = _resolve(o.data, "--data folder")
            if not Path(root).is_dir():
                raise InputError(f"--data {o.data}: give an image folder (a folder per class), TRAIN_LIST,VAL_LIST or "
                                 "TRAIN_LMDB,VAL_LMDB")
            spec = DataSpec(root=root, val_fraction=o.val_fraction)
        data = prepare_data(spec, self.out, self.log, "--data")
        if data.num_classes < 2:
            raise InputError(f"--data {o.data}: {data.num_classes} class found; tuning a classifier needs two or more")

        def count(path: Path) -> int:
            return sum(1 for line in Path(path).read_text().splitlines() if line.strip())

        return TuneData({"train_list": str(data.train_list), "val_list": str(data.val_list)}, data.num_classes,
                        count(data.train_list), count(data.val_list))

    def _net(self, classes: int, lmdb: bool = False) -> TuneNet:
        o = self.opts
        if o.crop and o.resize and o.crop > o.resize:
            raise InputError(f"--crop {o.crop} is larger than --resize {o.resize}: the crop is taken from the resized "
                             "image")
        size = dict(resize=o.resize, crop=o.crop, batch=o.batch)
        if o.net is None:
            if o.weights or o.solver:
                raise InputError("--weights and --solver go with your own NET (the template net starts from scratch)")
            if lmdb:
                raise InputError(f"--data {o.data}: LMDBs need your own NET reading them through Data layers (the "
                                 "template net reads images: give --data an image folder or two lists)")
            return TuneNet(**size)
        from ..prototxt.netread import load_net
        from ..prototxt.usernet import heads_of

        prototxt = _resolve(o.net, "NET")
        net = load_net(prototxt)
        head = heads_of(net, prototxt)[-1]
        layer = next(layer for layer in net.layer if layer.name == head.classifier)
        have = (layer.inner_product_param.num_output if layer.type == "InnerProduct"
                else layer.convolution_param.num_output)
        resize = None
        if have != classes:
            resize = classes
            self.log(f"caffegen: note: {Path(prototxt).name} classifies {have} classes, the data holds {classes}: "
                     f"its classifier is resized (renamed when fine-tuning, so it starts fresh)")
        data = self._data_layout(net, Path(prototxt).name, size, lmdb)
        return TuneNet(prototxt, _resolve(o.weights, "--weights"), _resolve(o.solver, "--solver"), resize, data,
                       **size)

    def _check_lmdb_fits(self, layers: list, name: str, crop: int | None) -> None:
        """The LMDBs' records are at least as large as the crop the net takes of them (Caffe would stop at its first
        batch): one line naming the sizes and the flags that would do."""
        from ..prototxt.deploy import lmdb_shape

        train = self.opts.data.split(",", 1)[0].strip()
        _, h, w = lmdb_shape(str(Path(train).expanduser())) or (0, 0, 0)
        side = crop or max(layer.transform_param.crop_size for layer in layers)
        if side and min(h, w) < side:
            raise InputError(f"--data {train}: its records are {h}x{w}, smaller than the {side}x{side} crop {name} "
                             f"takes{' (--crop)' if crop else ''}: give --crop {min(h, w)} or less (a head that pools "
                             f"globally takes it), or an LMDB made at the net's size (caffegen prepare --lmdb --resize "
                             f"{round(side * MATCHING_RESIZE)})")

    def _lmdb_test_iter(self, net: TuneNet, val_images: int) -> int:
        """Test batches that cover a val LMDB once (the sweep counts a list's lines; an LMDB's records the tune)."""
        from ..prototxt.netread import load_net, phases

        if net.batch:
            batch = test_batch_for(val_images, net.batch)
        else:
            test = [layer for layer in load_net(net.prototxt).layer if layer.type == "Data"
                    and "TEST" in phases(layer)]
            batch = test[0].data_param.batch_size if test else 1
        return math.ceil(val_images / max(1, batch))

    def _data_layout(self, net, name: str, size: dict[str, Any], lmdb_data: bool) -> str:
        """How a net reads the tune's data: ImageData layers the lists as they are; LMDB ``Data`` layers the LMDBs
        given, or else the same layers turned into ImageData on the lists (their transform kept: scale, mean,
        mirror, crop), resized to the side the net was made for (``--resize``, else its crop x 8/7)."""
        lmdb = [layer for layer in net.layer if layer.type == "Data"]
        if lmdb_data:
            if not lmdb:
                raise InputError(f"--data {self.opts.data}: {name} reads images (ImageData), not LMDBs: give --data "
                                 "an image folder or two lists")
            self._check_lmdb_fits(lmdb, name, size["crop"])
            return "keep"
        if not lmdb:
            return "keep"
        if size["resize"] is None and size["crop"] is None:
            crop = max((layer.transform_param.crop_size for layer in lmdb), default=0)
            if not crop:
                raise InputError(f"{name}: layer {lmdb[0].name!r} reads an LMDB (Data) and crops nothing, so the side "
                                 "of its images is unknown here: give --resize N, the side the net was made for (e.g. "
                                 "--resize 28 for LeNet on MNIST), to feed it --data through ImageData")
            size["resize"] = round(crop * MATCHING_RESIZE)
        self.log(f"caffegen: note: {name} reads LMDBs through Data layers: the tune feeds it --data through "
                 f"ImageData layers instead (resize {size['resize'] or 'to match --crop'}; the net's own transform "
                 "kept: scale, mean, mirror, crop)")
        return "imagedata"

    def _run(self) -> TuneResult:
        o = self.opts
        extra = spec_tables(o.spec)
        data = self._data()
        val_images, train_images = data.val_images, data.train_images
        net = self._net(data.classes, data.lmdb)
        sanity_on = o.sanity and not data.lmdb
        if data.lmdb:     # the sweep counts a list's lines for test_iter; an LMDB's records the tune counted
            extra = {**extra, "solver": {"test_iter": self._lmdb_test_iter(net, val_images), **extra.get("solver", {})}}
            if o.sanity:
                self.log("caffegen: note: sanity is skipped: it overfits 2 images per class drawn from image lists, "
                         "and --data gives LMDBs")
        self.log(f"[tune] trains at {_size_text(net)}")
        batch = net.batch or (16 if net.prototxt is None else None)
        iters = o.iters or max(20, 10 * round(DEFAULT_EPOCHS * train_images / (batch or 16) / 10))
        search_iters = o.search_iters or max(10, iters // 3)
        if search_iters > iters:
            raise InputError(f"--search-iters {search_iters} is above --iters {iters}")
        tables = dict(data=data.tables, net=net, classes=data.classes, val_images=val_images, run=self._run_table(),
                      extra=extra)
        short = base_tables("search", iters=search_iters, passes=TEST_PASSES_SEARCH, **tables)
        full = base_tables("final", iters=iters, passes=TEST_PASSES_FINAL, **tables)
        probe_spec = self._write_spec("probe", {**short, "name": "probe", "grid": {"base_lr": [0.01]}})

        # 0. measure: the speed of this net here, then the plan (refused before training when it cannot fit)
        if not self.state.done("measure"):
            with self._stage("measure") as entry:
                from ..probes.timing import measure

                from ..run.backends import slot_count

                t = measure(probe_spec, self.out / "measure", self.caffe, gpus=o.gpus, log=self.log,
                            slots=slot_count(probe_spec.run))
                entry["decision"] = asdict(t)
                entry["compute_s"] = round(t.wall_s, 3)
        t = self.state.stage("measure")["decision"]
        from ..run.backends import slot_count

        slots = slot_count(probe_spec.run)
        speed = Speed(t["iter_s"], t["test_s"], t["start_s"], slots, t.get("check_s", 0.0), t.get("figure_s", 0.0))
        plan = make_plan(self.budget, speed, iters=iters, search_iters=search_iters,
                         test_interval=full["solver"]["test_interval"],
                         search_test_interval=short["solver"]["test_interval"], policies=len(o.policies),
                         sanity_iters=SANITY_ITERS, lrfind_iters=LRFIND_ITERS, final=o.final,
                         skip_sanity=not sanity_on, spent=self.state.spent("measure"),
                         confirm_full=CONFIRM_FULL if self.state.plan is None else self.state.plan.get("confirm_full",
                                                                                                       False))
        if self.state.plan is None:
            self.state.plan = {**plan.to_json(), "trains_at": _size_text(net)}
            self.state.save()
        for line in plan.lines():
            self.log(line)
        self.log(f"[tune] live: {self.out / REPORT_HTML}; tensorboard --logdir {self.out / TENSORBOARD}")

        # 1. sanity
        if sanity_on and not self.state.done("sanity"):
            with self._stage("sanity") as entry:
                from ..probes.sanity import sanity

                t0 = time.time()
                result = sanity(probe_spec, self.out / "sanity", self.caffe, per_class=2, max_iter=SANITY_ITERS,
                                gpus=o.gpus, log=self.log)
                for retry in range(1, SANITY_RETRIES + 1):   # a guessed rate that blows up says nothing of the net
                    if not result.diverged:
                        break
                    lr = result.lr / 10
                    self.log(f"[tune] sanity: the loss blew up at base_lr {result.lr:g}: again at {lr:g} (x10 lower, "
                             f"{retry} of {SANITY_RETRIES})")
                    result = sanity(probe_spec, self.out / f"sanity-lr{lr:g}", self.caffe, per_class=2,
                                    max_iter=SANITY_ITERS, lr=lr, gpus=o.gpus, log=self.log)
                entry["compute_s"] = round(time.time() - t0, 3)   # one run in one slot
                entry["decision"] = {"passed": result.passed, "line": result.line, "causes": result.causes,
                                     "lr": result.lr}
                self.log(f"[tune] sanity: {result.line}")
                if not result.passed:
                    causes = "; ".join(f"{i}. {c}" for i, c in enumerate(result.causes, 1))
                    raise _Interrupt(1, f"sanity {result.line} -- likely causes: {causes} (fix the net or data, "
                                        "or skip the check with --no-sanity)")

        # 2. lr-find: the decades of base_lr the search covers
        if not self.state.done("lr-find"):
            with self._stage("lr-find") as entry:
                from ..probes.lrfind import lr_find

                t0 = time.time()
                found = lr_find(probe_spec, self.out / "lr-find", self.caffe, iters=LRFIND_ITERS, gpus=o.gpus,
                                log=self.log)
                entry["compute_s"] = round(time.time() - t0, 3)
                if found.suggested:
                    low, high = lr_range(found.suggested, found.blew_up_at)
                    why = (f"valley {found.suggested:.3g} (steep {found.suggestions.get('steep', 0):.3g}, "
                           f"minimum/10 {found.suggestions.get('minimum/10', 0):.3g}), a decade either side"
                           + (f", below a third of where the loss blew up ({found.blew_up_at:.3g})"
                              if found.blew_up_at else ""))
                else:
                    (low, high), why = FALLBACK_RANGE, "too few finite losses to suggest a rate: the seed's 1e-4..0.1"
                entry["decision"] = {"low": low, "high": high, "suggestions": found.suggestions,
                                     "blew_up_at": found.blew_up_at, "why": why}
        lr = self.state.stage("lr-find")["decision"]
        self.log(f"[tune] search range: base_lr {lr['low']:g} .. {lr['high']:g} ({lr['why']})")

        # 3. search: its compute budget set when it starts, from what the stages before it really took (kept for a
        # resumed search, whose spec must not change)
        # (or, when the repeated grid fits the budget, that grid: no search beats its power for its compute)
        grid_mode = self.state.plan.get("mode") == "grid"
        entry = self.state.stage("search")
        if grid_mode:
            search_spec = self._write_spec("search", {**full, "name": "search", "grid": {
                "base_lr": grid_lrs(lr["low"], lr["high"]), "lr_policy": list(o.policies), "repeats": GRID_REPEATS}})
        else:
            if "seconds" not in entry:
                entry["seconds"] = self._search_seconds(plan, speed, short)
                self.state.save()
            search_spec = self._write_spec("search", search_tables(
                short, lr=(lr["low"], lr["high"]), policies=list(o.policies), trials=self.state.plan["trials"],
                seconds=entry["seconds"], seed=o.seed, seed_sd=prior_seed_sd(val_images)))
        search_dir = self.out / "search"
        if not self.state.done("search"):
            with self._stage("search") as entry:
                if grid_mode:
                    self.log("[tune] the repeated grid fits the budget: it runs instead of a search (more power "
                             "for that compute than any search)")
                else:
                    self.log(f"[tune] the study: optuna-dashboard {study_storage(search_dir)}")
                self._sweep(search_spec, search_dir, "search")
                entry["decision"] = {"candidates": _candidates(search_dir)}
        candidates = self.state.stage("search")["decision"]["candidates"]
        if not candidates:
            raise _Interrupt(1, f"no trial of the search produced a test result (see {search_dir / REPORT_HTML})")

        # 4. confirm: rounds of one more seed for the candidates still in contention
        if not self.state.done("confirm"):
            with self._stage("confirm") as entry:
                if grid_mode:
                    self._grid_verdict(entry, search_dir, candidates)
                else:
                    self._confirm(entry, full if plan.confirm_full else short, candidates, speed, plan)
        verdict = self.state.stage("confirm")["decision"]
        winner = verdict["winner"]
        self.log(f"[tune] {verdict['headline']}")

        # 5. final
        final_dir = self.out / "final"
        if o.final != "none" and not self.state.done("final"):
            with self._stage("final") as entry:
                if grid_mode:     # the winner already ran at the full length, with every seed of the grid
                    self.log("[tune] final: the grid trained the winner at the full length (3 seeds): nothing to "
                             "retrain")
                elif plan.confirm_full and verdict["winner"].get("seeds"):
                    self.log("[tune] final: the confirm stage trained the winner at the full length "
                             f"({verdict['winner']['seeds']} fresh seeds): nothing to retrain")
                elif o.final == "retrain":
                    spec = self._write_spec("final", final_tables(full, winner["point"]))
                    self._sweep(spec, final_dir, "final")
                else:
                    from ..probes.extend import extend_run

                    t0 = time.time()
                    extend_run(search_dir / winner["runs"][0], iters, self.caffe, log=self.log, gpus=o.gpus)
                    entry["compute_s"] = round(entry.get("compute_s", 0.0) + time.time() - t0, 3)
                how = "grid" if grid_mode else "confirm" if plan.confirm_full and winner.get("seeds") else o.final
                entry["decision"] = {"how": how, "iters": iters}

        # 6. look
        if not self.state.done("look"):
            with self._stage("look") as entry:
                how = (self.state.stage("final").get("decision", {}).get("how")
                       or ("confirm" if plan.confirm_full and winner.get("seeds") else o.final))
                if how == "confirm":       # the winner's best fresh-seed run, in its confirm round's folder
                    where = self._confirm_run(winner)
                else:
                    where = final_dir if how == "retrain" else search_dir
                entry["decision"] = self._look(where, winner)
        return self._finish(winner, verdict)

    def _search_seconds(self, plan: Plan, speed: Speed, short: dict[str, Any]) -> float:
        """The search's compute budget (slot-seconds): the plan's, less what the stages before it overran (a
        machine slower than measured, a busier one), never below one run."""
        return search_seconds(plan, speed, spent=self.state.spent(),
                              run_s=speed.run_s(plan.search_iters, short["solver"]["test_interval"]))

    def _confirm(self, entry: dict[str, Any], short: dict[str, Any], candidates: list[dict[str, Any]], speed: Speed,
                 plan: Plan) -> None:
        """Run the candidates with fresh seeds 1, 2, ... (never their search run: its score was selected for being
        high): after each round :func:`.decide.confirm_round` drops the ones that cannot be the best; stop when one
        is left, the rounds are done, or the budget would not hold. :func:`.decide.choose` names the winner."""
        rounds = entry.setdefault("rounds", [])
        alive = [c["name"] for c in candidates[:CONFIRM_CANDIDATES]]
        by_name = {c["name"]: c for c in candidates}
        values: dict[str, dict[int, float]] = {n: {} for n in alive}
        maximize = candidates[0]["maximize"]
        for done in rounds:        # a resumed confirm: the rounds already run
            for name, v in done["values"].items():
                values.setdefault(name, {})[int(done["seed"])] = v
            alive = [n for n in alive if n in done["alive"]]
        run_s = speed.run_s(short["solver"]["max_iter"], short["solver"]["test_interval"])
        final_s = sum(s.seconds for s in plan.stages if s.name == "final")
        searched = len(_rows(self.out / "search"))
        method = "no confirm round: the search's best"
        for seed in range(len(rounds) + 1, CONFIRM_ROUNDS + 1):
            if len(alive) < 2:
                break
            fits, cost = confirm_round_fits(
                speed, wall_s=plan.wall_s, spent=self.state.spent() + (time.time() - self.stage_t0),
                alive=len(alive), run_s=run_s, final_s=final_s, runs_before=sum(len(r["values"]) for r in rounds),
                rounds_before=len(rounds), final=self.opts.final != "none" and not plan.confirm_full,
                searched=searched)
            if not fits:
                self.log(f"[tune] confirm: no round {seed}: {duration(cost)} would not fit the budget")
                break
            spec = self._write_spec(f"confirm-seed{seed}", confirm_tables(
                {**short, "name": f"confirm-seed{seed}"}, [by_name[n]["point"] for n in alive], seed))
            out = self.out / "confirm" / f"seed{seed}"
            self._sweep(spec, out, "confirm")
            got = _round_values(out, [by_name[n] for n in alive], seed)
            for name, v in got.items():
                values[name][seed] = v
            alive, method = confirm_round(values, alive, maximize=maximize)
            rounds.append({"seed": seed, "values": got, "alive": list(alive), "method": method})
            self.state.save()
        metric = metric_label(candidates[0]["metric"])
        have = [n for n in alive if values.get(n)]
        if have:
            v = choose(values, have, maximize=maximize)
            win, mean, n, tied = by_name[v.winner], v.mean, v.seeds, v.tied
            what = f"mean best {metric} {mean:.3f} over {n} fresh seed{'s' * (n > 1)}"
        else:     # no round fitted the budget: the search's best, on its search score alone
            win, mean, n, tied = by_name[alive[0]], by_name[alive[0]]["value"], 0, []
            what = f"best {metric} {mean:.3f} in the search (no fresh seed: the confirm stage did not fit)"
        head = (f"winner {win['name']}: {what}"
                + (f"; tied with {', '.join(tied)} (not separated at this noise: {method})" if tied else
                   f", separated from the other candidates ({method})" if len(candidates) > 1 and n else ""))
        entry["decision"] = {"winner": {**win, "mean": mean, "seeds": n}, "tied": tied, "method": method,
                             "headline": head, "values": values}

    def _confirm_run(self, winner: dict[str, Any]) -> Path:
        """The winner's best confirm run (its fresh seed with the best value)."""
        values = self.state.stage("confirm")["decision"]["values"][winner["name"]]
        sign = 1.0 if winner["maximize"] else -1.0
        seed = max(values, key=lambda s: sign * values[s])
        return self.out / "confirm" / f"seed{seed}" / f"{variant_name(winner['point'])}_seed{seed}"

    def _grid_verdict(self, entry: dict[str, Any], grid_dir: Path, candidates: list[dict[str, Any]]) -> None:
        """The repeated grid's verdict, by the confirm stage's own rule (:func:`.decide.confirm_round` over every
        configuration's seeds, :func:`.decide.choose`): no run of its own."""
        by_name = {c["name"]: c for c in candidates}
        values: dict[str, dict[int, float]] = {}
        for r in _rows(grid_dir):
            name = variant_name({k: r.axes[k] for k in ("base_lr", "lr_policy") if k in r.axes})
            if name in by_name and r["best_top1"] is not None:
                values.setdefault(name, {})[int(r["seed"] or 0)] = r["best_top1"]
        maximize = candidates[0]["maximize"]
        alive, method = confirm_round(values, list(values), maximize=maximize)
        v = choose(values, alive, maximize=maximize)
        metric = metric_label(candidates[0]["metric"])
        head = (f"winner {v.winner}: mean best {metric} {v.mean:.3f} over {v.seeds} seeds of the repeated grid at the "
                "full length" + (f"; tied with {', '.join(v.tied)} (not separated at this noise: {method})" if v.tied
                                 else f", separated from the other {len(values) - 1} configurations ({method})"))
        entry["decision"] = {"winner": {**by_name[v.winner], "mean": v.mean, "seeds": v.seeds}, "tied": v.tied,
                             "method": method, "headline": head, "values": values}

    def _look(self, sweep_dir: Path, winner: dict[str, Any]) -> dict[str, Any]:
        from ..evaluate import evaluate_sweep
        from ..export.tensorboard import export_tensorboard
        from ..report import write_report

        out: dict[str, Any] = {}
        from ..evaluate import evaluate_run
        from ..layout import is_sweep_dir

        try:     # first: each report is written once, after it, linking the evaluation
            ev = (evaluate_sweep(sweep_dir, snapshot="best", report=False)[0] if is_sweep_dir(sweep_dir)
                  else evaluate_run(sweep_dir, snapshot="best"))    # one run (the winner's, of a confirm round)
            out["evaluation"] = {"run": ev.run_dir.name, "iteration": ev.iteration, "top1": ev.top1, "top5": ev.top5,
                                 "images": ev.images, "index": str(ev.out_dir / "index.html")}
            self.log(f"[tune] evaluated {ev.run_dir.name} @ iteration {ev.iteration}: top-1 {ev.top1:.4f} on "
                     f"{ev.images} images ({ev.out_dir / 'index.html'})")
        except CaffegenError as exc:     # an LMDB-only net or a missing snapshot: the reports still stand
            self.log(f"caffegen: note: evaluate: {exc}")
        for d in self._sweep_dirs():
            write_report(d, run_figures=d.name != "search")   # a search's many trials: its small multiples show them
            export_tensorboard(d, self.out / TENSORBOARD / d.relative_to(self.out))
        return out

    def _sweep_dirs(self) -> list[Path]:
        return [d for d in (self.out / "search", *sorted((self.out / "confirm").glob("seed*")), self.out / "final")
                if (d / SWEEP_DB).is_file()]

    def _finish(self, winner: dict[str, Any], verdict: dict[str, Any]) -> TuneResult:
        from .report import bill_of, grid_compute_s, write_tune_report

        bill = bill_of(self.state)
        grid = grid_compute_s(self.state.plan)
        compute = sum(b["compute_s"] for b in bill)
        self.log(f"[tune] bill: {duration(self.state.spent())} wall in all, {duration(self.state.plan['wall_s'])} "
                 f"budgeted; compute, everything counted, {duration(compute)} = {100 * compute / grid:.1f}% of the "
                 f"repeated grid's estimate ({self.state.plan['grid_runs']} runs, {duration(grid)})")
        for b in bill:
            self.log(f"  {b['stage']:<8} {duration(b['spent_s']):>7} wall, {duration(b['compute_s']):>7} compute")
        report = write_tune_report(self.out, self.state, bill)
        return TuneResult(self.out, 0, verdict["headline"], winner, report, bill)


def _size_text(net: TuneNet) -> str:
    """The size a tune trains at, as the plan says it."""
    size = net.size()
    if net.prototxt is None:
        size = {**{k: TEMPLATE_NET[k] for k in ("resize", "crop", "train_batch")}, **size}
    parts = [f"{k.replace('train_', '')} {size[k]}" for k in ("resize", "crop", "train_batch") if size.get(k)]
    what = "the template net" if net.prototxt is None else Path(net.prototxt).name
    own = "" if net.prototxt is None else " (the rest the net's own)" if parts else " its own size"
    return f"{what}{': ' + ', '.join(parts) if parts else ''}{own}" + (
        "; a winner found at a reduced size is a candidate for the full size, not a proof" if net.prototxt and
        (net.crop or net.resize) else "")


def _rows(sweep_dir: Path) -> list:
    from ..sweep.store import read_sweep

    return read_sweep(sweep_dir)[0]


def _compute(sweep_dir: Path) -> float:
    """The slot-seconds a sweep's runs trained (the sum of their wall times)."""
    from ..sweep.store import read_sweep

    rows, _ = read_sweep(sweep_dir)
    return sum(r["wall_s"] or 0.0 for r in rows)


def _candidates(search_dir: Path) -> list[dict[str, Any]]:
    """The search's finished trials with a result, best first, one per point (:func:`.decide.candidates`, every
    one of them: the confirm stage takes its first few)."""
    from ..report.analysis import load_runs, ranked_variants

    runs, record = load_runs(search_dir)
    trials = []
    for v in ranked_variants(runs, record):
        r = v.runs[0]
        point = {k: r.axes[k] for k in ("base_lr", "lr_policy") if k in r.axes}
        point.update({k: val for k, val in r.axes.items() if k not in point})
        ok = v.score is not None and r.status in WITH_RESULT
        trials.append(SearchOutcome(variant_name(point), point, v.score if ok else None, pruned=r.status == PRUNED,
                                    runs=(r.variant,)))
    chosen = candidates(trials, maximize=record.maximize, k=len(trials), distinct=DISTINCT_CANDIDATES)
    return [{"name": t.name, "point": t.point, "value": t.value, "runs": list(t.runs), "metric": record.metric,
             "maximize": record.maximize} for t in chosen]


def _round_values(out: Path, alive: list[dict[str, Any]], seed: int) -> dict[str, float]:
    """Each candidate's best value in a confirm round (its run of that seed)."""
    from ..sweep.store import read_sweep

    rows, _ = read_sweep(out)
    got = {}
    for c in alive:
        name = f"{variant_name(c['point'])}_seed{seed}"
        row = next((r for r in rows if r.variant == name), None)
        if row is not None and row["best_top1"] is not None:
            got[c["name"]] = row["best_top1"]
    return got


def tune(opts: TuneOptions, caffe: CaffeInstall | None = None, *, log: Callable[[str], None] = print,
         display: Any = None) -> TuneResult:
    """Run (or resume) the tune ``opts`` describes; see the module docstring."""
    from ..toolchain import locate

    return Tuner(opts, caffe or locate(), log, display).run()
