"""``caffegen tune``: from a net and an image folder to a trusted answer, in the order an expert works (seeds 001-003).

    measure  a short real run times this net on this hardware: the plan and its budget are printed first;
    sanity   can the net overfit a tiny subset? (a FAIL stops here, with its causes);
    lr-find  the range test finds the valley of the loss;
    search   the rate scan (the default where the budget fits it): poly and cosine at 4 base_lr a half-decade apart
             up from the valley, at the full length; or (``--strategy search``, a small budget) TPE over base_lr x
             the schedules in short runs, pruned only beyond the val set's and the seeds' noise (``sweep.pruning``);
    confirm  the schedules at the scan's rate (or the search's best 4) with fresh seeds at the full length, round
             by round: with repeats, Hsu's comparisons with the best separate a winner or say "tied";
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
from ..layout import SWEEP_DB, TENSORBOARD, TUNE_LOCK, TUNE_SPECS, default_out
from ..paths import exclusive
from ..prototxt.usernet import MATCHING_RESIZE
from ..toolchain import CaffeInstall
from .budget import DEFAULT_BUDGET, Plan, Speed, duration, parse_budget, search_seconds
from .decisions import Confirmed, decision_of
from .specs import (TEST_PASSES_FINAL, TEST_PASSES_SEARCH, TUNE_SCHEDULES, TuneNet, base_tables, in_tune_terms,
                    size_text, spec_tables, test_batch_for)
from .stages import PIPELINE, Context, StopTune
from .state import TuneState

__all__ = ["TuneOptions", "TuneResult", "tune", "STAGES"]

STAGES = tuple(stage.name for stage in PIPELINE)
FINALS = ("retrain", "extend", "none")
STRATEGIES = ("scan", "search")
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
    search_iters: int | None = None            # the search's length [default: iters / 3]
    final: str = "retrain"
    sanity: bool = True
    seed: int = 0                              # the search's sampler seed and the runs' random_seed (the confirm's
                                               # fresh seeds follow it)
    policies: tuple[str, ...] = TUNE_SCHEDULES
    val_fraction: float = 0.2
    jobs: int | None = None
    gpus: tuple[int, ...] = ()
    backend: str = "local"
    address: str | None = None
    resize: int | None = None                  # the size it trains at: --resize, --crop, --batch (None: the net's own)
    crop: int | None = None
    batch: int | None = None
    spec: str | None = None                    # --spec FILE: [data], [net], [solver], [run] for the rest
    strategy: str = "scan"                     # "scan": the rate scanned at the full length, then the schedules
                                               # at it (where the budget fits it; else the search); "search"

    def identity(self) -> dict[str, Any]:
        """What defines the tune (a rerun must match it): not where or how wide it runs; paths absolute (a rerun
        from another folder names the same files)."""
        out = {k: (str(v.resolve()) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
               for k, v in asdict(self).items() if k not in ("out", "jobs", "gpus", "backend", "address")}
        for k in ("resize", "crop", "batch", "spec"):      # unset: as a folder made before these flags has it
            if out[k] is None:
                del out[k]
        if out["strategy"] == "scan":      # the default: as a folder made before the flag has it
            del out["strategy"]
        if self.spec and Path(self.spec).is_file():      # its content: an edited file is another tune
            from ..paths import sha256_file

            out["spec_sha256"] = sha256_file(Path(self.spec))
        return out


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

        path = self.out / TUNE_SPECS / f"{name}.toml"
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
            raise StopTune(res.exit_code, f"stage {stage} stopped: "
                             + (res.error or f"interrupted by {signal.Signals(res.signal).name}")
                             + "; rerun the same command to resume")
        return res

    # -- the stages
    def run(self) -> TuneResult:
        o = self.opts
        if o.final not in FINALS:
            raise InputError(f"--final must be one of {', '.join(FINALS)}, got {o.final!r}")
        if o.strategy not in STRATEGIES:
            raise InputError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {o.strategy!r}")
        self.budget = parse_budget(o.budget)
        from ..run.backends import BACKENDS

        if o.address is not None and not BACKENDS[o.backend].address:
            raise InputError(f"--address {o.address} is a cluster's address: it needs --backend ray")
        BACKENDS[o.backend].require(o.address)    # no Ray, or no cluster at --address: one line, nothing made
        created = self.out.absolute()   # the outermost folder this tune creates (None: it exists: a resume)
        while not created.parent.exists():
            created = created.parent
        created = None if created.exists() else created
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with exclusive(self.out / TUNE_LOCK, f"another caffegen tune (pid {{pid}}) is running in {self.out}"):
                self.state = TuneState.open(self.out, o.identity())
                try:
                    return self._run()
                except StopTune as exc:
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
                       **size, reduced=bool(o.crop or o.resize))

    def _check_lmdb_fits(self, layers: list, name: str, crop: int | None) -> None:
        """The LMDBs' records are at least as large as the crop the net takes of them (Caffe would stop at its first
        batch): one line naming the sizes and the flags that would do."""
        from ..prototxt.deploy import lmdb_shape

        train = self.opts.data.split(",", 1)[0].strip()
        _, h, w = lmdb_shape(str(Path(train).expanduser())) or (0, 0, 0)
        side = crop or max(layer.transform_param.crop_size for layer in layers)
        if side and min(h, w) and min(h, w) < side:     # (an --encoded LMDB records no size: not checked)
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

    def _context(self) -> Context:
        """The data, the net at its size, the two lengths and their tables: what every stage shares."""
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
        self.log(f"[tune] trains at {size_text(net)}")
        batch = net.batch or (16 if net.prototxt is None else None)
        iters = o.iters or max(20, 10 * round(DEFAULT_EPOCHS * train_images / (batch or 16) / 10))
        search_iters = o.search_iters or max(10, iters // 3)
        if search_iters > iters:
            raise InputError(f"--search-iters {search_iters} is above --iters {iters}")
        tables = dict(data=data.tables, net=net, classes=data.classes, val_images=val_images, run=self._run_table(),
                      extra=extra, seed=o.seed)
        short = base_tables("search", iters=search_iters, passes=TEST_PASSES_SEARCH, **tables)
        full = base_tables("final", iters=iters, passes=TEST_PASSES_FINAL, **tables)
        probe_spec = self._write_spec("probe", {**short, "name": "probe", "grid": {"base_lr": [0.01]}})
        return Context(data, net, iters, search_iters, short, full, probe_spec, sanity=sanity_on)

    def _run(self) -> TuneResult:
        """The stages in order (:data:`.stages.PIPELINE`): a finished one's decision is read back, not run again."""
        from ..run.backends import BACKENDS
        from ..sweep.spec import RunSettings

        run = RunSettings(**{k: tuple(v) if k == "gpus" else v for k, v in self._run_table().items()})
        where = BACKENDS[run.backend].preflight(run, self.out)    # a cluster: CPUs, a caffe on each node, --out seen
        ctx = self._context()                                        # by each: one line if not, before anything
        if where:
            self.log(f"[tune] runs on {where}")
        for stage in PIPELINE:
            if not stage.wanted(self, ctx):
                continue
            stage.before(self, ctx)
            if not self.state.done(stage.name):
                with self._stage(stage.name) as entry:
                    decision = stage.run(self, ctx, entry)
                    entry["decision"] = decision.to_json()
                    stage.check(decision)
            stage.after(self, ctx, decision_of(stage.name, self.state.stage(stage.name).get("decision")))
        return self._finish(ctx.verdict)

    def _search_seconds(self, plan: Plan, speed: Speed, short: dict[str, Any]) -> float:
        """The search's compute budget (slot-seconds): the plan's, less what the stages before it overran (a
        machine slower than measured, a busier one), never below one run."""
        return search_seconds(plan, speed, spent=self.state.spent(),
                              run_s=speed.run_s(plan.search_iters, short["solver"]["test_interval"]))

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

    def _finish(self, verdict: Confirmed) -> TuneResult:
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
        from .report import headline_lines

        return TuneResult(self.out, 0, "\n".join(headline_lines(self.out, self.state)), verdict.winner, report, bill)


def _compute(sweep_dir: Path) -> float:
    """The slot-seconds a sweep's runs trained (the sum of their wall times)."""
    from ..sweep.store import read_sweep

    rows, _ = read_sweep(sweep_dir)
    return sum(r["wall_s"] or 0.0 for r in rows)


def tune(opts: TuneOptions, caffe: CaffeInstall | None = None, *, log: Callable[[str], None] = print,
         display: Any = None) -> TuneResult:
    """Run (or resume) the tune ``opts`` describes; see the module docstring."""
    from ..toolchain import locate

    return Tuner(opts, caffe or locate(), log, display).run()
