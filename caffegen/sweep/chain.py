"""A chained run on disk: the segments of a schedule Caffe lacks (:mod:`caffegen.prototxt.chains`), each written as
it starts into ``segments/`` of the run folder, and the data that carries on across them.

Each segment is a real ``caffe train`` of its own solver (``segments/segNN.solver.prototxt``: the run's solver with
its lr fields, and a max_iter at the segment's end), resumed from the previous segment's snapshot. A restarted caffe
opens its data layers at their first record again, and a seeded shuffle repeats its first order: a naive chain of
short segments would train on the same first images again and again. So the TRAIN data of a chained run is read
in an order caffegen keeps: position p of the run's stream is image ``perm_e[p mod N]`` of epoch ``e = p div N``,
``perm_e`` a permutation of the train list seeded by (random_seed, e). A segment that starts at iteration s has
consumed s x batch x iter_size images; it reads the stream from there:

* an ImageData layer (a list): a list file of the stream's next images (``segments/segNN.train.txt``), unshuffled;
* a Data layer (an LMDB, read in key order): a copy of the LMDB rotated to start at the record where the unchained
  run would be (cached per offset beside the sweep: ``.chains/``), so the order is exactly the unchained run's.

What is guaranteed, and tested on the real binary: every image is seen exactly once per epoch, in a new order each
epoch (lists), and the images a run trains on do not depend on how it is cut into segments.
"""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError
from ..layout import SOLVER, TRAIN_VAL
from ..paths import sha256_file, write_atomic
from ..prototxt.chained import REGISTRY
from ..prototxt.chained.pieces import polyline
from ..prototxt.chains import TOLERANCE, Piece, base_of, chain_lr, line, planned
from ..prototxt.options import SolverOptions

__all__ = ["Segment", "RunChain", "stream", "extended", "SEGMENTS", "PREFETCH_MARGIN"]

SEGMENTS = "segments"
PREFETCH_MARGIN = 6      # batches beyond a segment's need in its list (Caffe prefetches 4 ahead; the rest unread)


@dataclass(frozen=True)
class Segment:
    """One segment of a chained run as it was started: its iterations, its solver (relative to the run folder) and
    what it is (``warm-up``, ``cosine``, ``plateau: lr 0.001 after 1 drop``)."""

    index: int
    start: int
    end: int
    solver: str
    policy: str
    base_lr: float
    note: str


def stream(lines: Sequence[str], seed: int, start: int, count: int) -> list[str]:
    """``count`` items of a run's image stream from position ``start``: epoch after epoch, each a permutation of
    ``lines`` seeded by (seed, epoch)."""
    n = len(lines)
    out: list[str] = []
    pos = start
    while len(out) < count:
        epoch, k = divmod(pos, n)
        order = list(range(n))
        random.Random(f"caffegen-stream-{seed}-{epoch}").shuffle(order)
        take = order[k: k + (count - len(out))]
        out += [lines[i] for i in take]
        pos += len(take)
    return out


class RunChain:
    """The segments of one chained run (the run path's :class:`~caffegen.run.trainer.Training` asks for them: its
    ``chain``). ``metric``/``maximize``: what a plateau watches, in its direction."""

    def __init__(self, opts: SolverOptions, run_dir: Path, *, metric: str | None, maximize: bool = True,
                 pieces: list[Piece] | None = None) -> None:
        """``opts``: the run's solver options (its schedule); ``pieces``: the chain to follow instead of the
        schedule's own (an extension's)."""
        self.run_dir = Path(run_dir)
        self.opts = opts
        self.metric, self.maximize = metric, maximize
        self.name = self.opts.lr_policy
        self.base, _ = base_of(self.name)
        self.static = pieces if pieces is not None else self.opts.pieces() if planned(self.name) else None
        self.test_interval = self.opts.test_interval or max(1, self.opts.max_iter // 20)
        self.folder = self.run_dir / SEGMENTS

    # -- the plan
    def _piece(self, at: int, tests: Sequence[tuple[int, float]]) -> Piece | None:
        if at >= self.opts.max_iter:
            return None
        if self.static is not None:
            return next((p for p in self.static if p.start <= at < p.end), None)
        params = self.opts.policy_params()
        if self.name.endswith("+warmup") and at < params["warmup_iter"]:
            return self.opts.pieces()[0]
        return REGISTRY[self.base].next_piece(self.opts.base_lr, params, tests, self.maximize, at=at,
                                              max_iter=self.opts.max_iter, test_interval=self.test_interval)

    def start(self, at: int, tests: Sequence[tuple[int, float]] = ()) -> Segment:
        """The segment that trains from iteration ``at`` (0, or the snapshot a run resumes from), its files
        written."""
        piece = self._piece(at, tests)
        if piece is None:
            raise InputError(f"{self.run_dir.name}: the chain has no segment at iteration {at}")
        return self._write(piece, at)

    def next(self, at: int, tests: Sequence[tuple[int, float]] = ()) -> Segment | None:
        """After a segment ended cleanly at iteration ``at``: the next one (None: the run is done)."""
        piece = self._piece(at, tests)
        return None if piece is None else self._write(piece, at)

    # -- the files
    def _write(self, piece: Piece, at: int) -> Segment:
        from ..prototxt.files import segment_solver

        records = self.segments()
        index = len(records)
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"seg{index:02d}"
        net_text = self._net(at, piece.end, stem)
        write_atomic(self.folder / f"{stem}.{TRAIN_VAL}", net_text)
        rel = f"{SEGMENTS}/{stem}.{SOLVER}"
        text = (self.run_dir / SOLVER).read_text(encoding="utf-8")
        write_atomic(self.run_dir / rel, segment_solver(text, piece, net=f"{SEGMENTS}/{stem}.{TRAIN_VAL}",
                                                        where=str(self.run_dir / SOLVER)))
        seg = Segment(index, at, piece.end, rel, piece.policy, piece.base_lr, piece.note)
        record = {**asdict(seg), "sha256": {"solver": sha256_file(self.run_dir / rel),
                                            "net": sha256_file(self.folder / f"{stem}.{TRAIN_VAL}")}}
        write_atomic(self.folder / "chain.json", json.dumps({"schedule": self.name, "segments": [
            *records, record]}, indent=2) + "\n")
        return seg

    def segments(self) -> list[dict[str, Any]]:
        """The segments started so far (``segments/chain.json``): what the manifest records."""
        path = self.folder / "chain.json"
        return json.loads(path.read_text())["segments"] if path.exists() else []

    def _net(self, at: int, end: int, stem: str) -> str:
        """The run's net with its TRAIN data layer reading the stream from where iteration ``at`` left it."""
        from google.protobuf import text_format

        from ..prototxt.netread import data_layers
        from ..prototxt.validate import parse_text

        where = str(self.run_dir / TRAIN_VAL)
        net = parse_text((self.run_dir / TRAIN_VAL).read_text(encoding="utf-8"), "net", where)
        layer = data_layers(net, where)["TRAIN"]
        iter_size = self.opts.iter_size
        seed = self.opts.random_seed or 0
        if layer.type == "ImageData":
            p = layer.image_data_param
            batch = p.batch_size
            lines = _lines(self.run_dir, p.source)
            need = (end - at) * batch * iter_size + PREFETCH_MARGIN * batch
            items = stream(lines, seed, at * batch * iter_size, need)
            write_atomic(self.folder / f"{stem}.train.txt", "".join(f"{line}\n" for line in items))
            p.source = f"{SEGMENTS}/{stem}.train.txt"
            p.shuffle = False
        elif layer.type == "Data":
            p = layer.data_param
            p.source = str(rotated_lmdb(self.run_dir, p.source, at * p.batch_size * iter_size))
        return text_format.MessageToString(net)


def _lines(run_dir: Path, source: str) -> list[str]:
    path = Path(source)
    path = path if path.is_absolute() else run_dir / path
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{path}: an empty train list")
    return lines


def rotated_lmdb(run_dir: Path, source: str, consumed: int) -> Path:
    """The run's LMDB as a copy that starts at record ``consumed mod N`` (key order, as Caffe's Data layer reads it):
    made once per offset, beside the sweep (``.chains/``); the source itself at offset 0."""
    import lmdb
    src = Path(source)
    src = src if src.is_absolute() else run_dir / src
    with lmdb.open(str(src), readonly=True, lock=False) as env:
        n = env.stat()["entries"]
        if n == 0:
            raise InputError(f"{src}: an empty LMDB")
        offset = consumed % n
        if offset == 0:
            return src.resolve()
        key = hashlib.sha256(f"{src.resolve()}:{(src / 'data.mdb').stat().st_mtime_ns}".encode()).hexdigest()[:12]
        dst = run_dir.parent / ".chains" / f"{key}-{offset}"
        if (dst / "done").exists():
            return dst.resolve()
        tmp = dst.with_name(dst.name + ".tmp")
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        size = max(1 << 20, int((src / "data.mdb").stat().st_size * 1.2))
        with env.begin() as txn, lmdb.open(str(tmp), map_size=size) as out:
            items = list(txn.cursor())
            with out.begin(write=True) as w:
                for i, (_, value) in enumerate(items[offset:] + items[:offset]):
                    w.put(f"{i:010d}".encode(), value)
        (tmp / "done").write_text("")
        if dst.exists():
            shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    return dst.resolve()


def extended(opts: SolverOptions, at: int, new_max: int) -> tuple[SolverOptions, list[Piece] | None, str]:
    """What extending a chained run from iteration ``at`` to ``new_max`` means, done: (its new options, the pieces
    to follow from ``at`` (None: the schedule's own), the sentence that says so).

    * a schedule defined by the run's length (``stretched``: linear, cosine, onecycle): the part not yet trained is
      stretched to the new end (the lr goes on from where it is and reaches the same end value at the new max_iter;
      a cosine keeps its shape over the longer rest);
    * the others (sgdr, triangular, plateau) go on as their ``extends`` says: their cycles go on (more restarts,
      more cycles) and a plateau keeps deciding, with their parameters as they were resolved;
    * after a warm-up, Caffe's own policies keep their parameters as written (as ``caffegen extend`` does for them).
    """
    import dataclasses

    frozen = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.policy_params().items()}
    new = dataclasses.replace(opts, max_iter=new_max, **frozen)
    base, _ = base_of(opts.lr_policy)
    schedule = REGISTRY.get(base)      # (None: one of Caffe's own, after a warm-up)
    if schedule is None or not schedule.stretched:
        kept = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in frozen.items())
        how = schedule.extends if schedule is not None else "the schedule continues as it was defined"
        return new, None, f"{opts.lr_policy}: its parameters are kept as resolved ({kept}); {how} to {new_max}"
    old = opts.pieces()
    k = (new_max - at) / max(1, opts.max_iter - at)
    out: list[Piece] = []
    for p in old:
        if p.end <= at:
            continue
        a = max(p.start, at)
        s0, s1 = at + round((a - at) * k), at + round((p.end - at) * k)
        if s1 <= s0:
            continue
        if p.straight:
            la, lb = float(chain_lr([p], [a])[0]), p.base_lr * (1 + p.gamma * p.end)
            out.append(line(s0, s1, (s0, la), (s1, lb), f"{p.note}, stretched"))
        else:   # a curved piece: a polyline of it, stretched
            f = (lambda q: (lambda its: chain_lr([q], np.clip(np.round(at + (its - at) / k), q.start, q.end - 1)
                                                 .astype(int))))(p)
            out += polyline(f, s0, s1, TOLERANCE * opts.base_lr, f"{p.note}, stretched")
    if not out:      # a run that had finished its schedule: it goes on at its final lr
        final = float(chain_lr(old, [opts.max_iter - 1])[0])
        return new, [Piece(at, new_max, "fixed", final, note="the schedule's end, held")], (
            f"{opts.lr_policy}: defined by the run's length, and already at its end: it goes on at its final lr "
            f"{final:.3g} to {new_max}")
    out[-1] = Piece(out[-1].start, new_max, out[-1].policy, out[-1].base_lr, out[-1].gamma, out[-1].power,
                    out[-1].stepsize, out[-1].stepvalue, out[-1].note)
    return new, out, (f"{opts.lr_policy}: defined by the run's length, so the part not yet trained (from iteration "
                      f"{at}) is stretched to {new_max}: the lr goes on from {float(chain_lr(old, [at])[0]):.3g} and "
                      f"ends where it would have ended")
