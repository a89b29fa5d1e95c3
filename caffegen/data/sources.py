"""A sweep spec's ``[data]`` table -> the list files every run of the sweep trains on.

Three sources: the embedded demo set (generated once into the cache, keyed by its parameters), an image folder
or CSV (split into lists once per sweep folder), or ready list files (used as they are, checked to exist).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..paths import cache_root
from ..layout import LABELS, LIST_TRAIN, LIST_VAL
from .lists import read_list, scan, thin_classes, write_lists

__all__ = ["DataSpec", "PreparedData", "prepare_data", "demo_dataset", "augmented"]


@dataclass(frozen=True)
class DataSpec:
    """The ``[data]`` table of a sweep spec: exactly one of ``demo``, ``root``, ``train_list`` (+ ``val_list``); a
    user net may also read LMDBs (``train_lmdb`` + ``val_lmdb``), or nothing (its own sources)."""

    demo: dict[str, Any] | None = None
    root: str | None = None
    train_list: str | None = None
    val_list: str | None = None
    train_lmdb: str | None = None
    val_lmdb: str | None = None
    root_folder: str = ""
    val_fraction: float = 0.1
    seed: int = 0
    classes: Any = None
    per_class: int | None = None
    augment: Any = None          # offline augmentation of the train list: a preset, "rotate=15,flip,..." or a table


@dataclass(frozen=True)
class PreparedData:
    """The lists a sweep's runs read, and the classes they hold."""

    train_list: Path
    val_list: Path
    root_folder: str
    num_classes: int
    labels: list[str]


def prepare_data(d: DataSpec, out_dir: Path, log: Callable[[str], None], where: str = "spec") -> PreparedData | None:
    """Lists for the sweep in ``out_dir/lists`` (made once; demo images are generated once into the cache); None
    when the spec gives no images (a user net on its own sources, or on LMDBs only)."""
    if d.demo is None and d.root is None and d.train_list is None:
        return None
    if d.train_list:
        train, val = Path(d.train_list).expanduser(), Path(d.val_list or "").expanduser()
        for p in (train, val):
            if not p.is_file():
                raise InputError(f"{where}: [data] list file not found: {p}")
        labels = _labels_from_lists(train, val)
        return PreparedData(train.resolve(), val.resolve(), d.root_folder, len(labels), labels)
    if d.demo is not None:
        root = demo_dataset(d.demo, log)
    else:
        root = Path(d.root or "").expanduser()
        if not root.exists():
            raise InputError(f"{where}: [data] root not found: {root}")
    lists_dir = out_dir / "lists"
    train_path, val_path, labels_path = lists_dir / LIST_TRAIN, lists_dir / LIST_VAL, lists_dir / LABELS
    if not (train_path.exists() and val_path.exists() and labels_path.exists()):
        listset = scan(root, val_fraction=d.val_fraction, seed=d.seed, classes=d.classes, per_class=d.per_class)
        for path, reason in listset.skipped:
            log(f"warning: skipped {path}: {reason}")
        for line in thin_classes(listset, d.val_fraction):
            log(f"warning: {line}")
        write_lists(listset, lists_dir)
    labels = [ln for ln in labels_path.read_text(encoding="utf-8").splitlines() if ln.strip()]  # line i: label i
    return PreparedData(train_path.resolve(), val_path.resolve(), "", len(labels), labels)


def augmented(data: PreparedData, value: Any, out_dir: Path, log: Callable[[str], None],
              where: str = "spec") -> PreparedData:
    """``data`` with its train list augmented by ``value`` (``[data] augment`` or a ``data.augment`` grid value)
    into ``out_dir/lists/augment-<key>/`` (made once); the val list is the same file. ``none``: ``data`` itself."""
    from .augment import augment_list, parse_augment

    aug = parse_augment(value, f"{where}: [data] augment")
    if aug is None:
        return data
    key = hashlib.sha256(aug.canonical().encode()).hexdigest()[:10]
    folder = out_dir / "lists" / f"augment-{key}"
    train = folder / LIST_TRAIN
    if not (train.exists() and (folder / "augment.json").exists()):
        log(f"[data] augmenting the train list: {aug.describe()} -> {train}")
        augment_list(data.train_list, aug, folder, root_folder=data.root_folder)
    if data.root_folder:  # the copies are absolute paths: the val list must be read with root_folder "" too
        val = folder / LIST_VAL
        if not val.exists():
            import os

            items = read_list(data.val_list)
            write_bytes = b"".join(os.fsencode(p if Path(p).is_absolute() else os.path.abspath(data.root_folder + p))
                                   + b" " + str(label).encode() + b"\n" for p, label in items)
            from ..paths import write_atomic

            write_atomic(val, write_bytes)
        return PreparedData(train.resolve(), val.resolve(), "", data.num_classes, data.labels)
    return PreparedData(train.resolve(), data.val_list, "", data.num_classes, data.labels)


def _labels_from_lists(*paths: Path) -> list[str]:
    """Label names ``"0".."K-1"`` for lists whose largest label is K-1 (no labels.txt to name them)."""
    labels: set[int] = set()
    for p in paths:
        try:
            labels.update(label for _, label in read_list(p))
        except ValueError:
            raise InputError(f"{p}: a line is not 'path label' (an integer label after the last space)") from None
    n = max(labels) + 1 if labels else 0
    return [str(i) for i in range(n)]


def demo_dataset(params: dict[str, Any], log: Callable[[str], None]) -> Path:
    """The demo image set for ``params``, generated once into ``<cache>/demo/<hash>``."""
    from . import demo

    import fcntl

    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root() / "demo" / key
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(key + ".lock"), "w") as lock:   # two sweeps starting at once: one generates
        fcntl.flock(lock, fcntl.LOCK_EX)                      # (released when the file closes, or its holder dies)
        if not (root / ".complete").exists():
            log(f"[data] generating the demo image set into {root}")
            tmp = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            demo.generate(tmp, **params)
            (tmp / ".complete").write_text(json.dumps(params))   # the folder appears complete, or not at all
            shutil.rmtree(root, ignore_errors=True)
            os.replace(tmp, root)
    return root
