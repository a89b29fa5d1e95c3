"""Image folder (or CSV) -> the shuffled, stratified list files that Caffe's ``ImageData`` layer reads.

One line per image, ``<path> <label>``. Caffe 1.0 (``image_data_layer.cpp`` and ``convert_imageset.cpp``)
splits each line at its LAST space, so paths may contain spaces and any non-ASCII characters; only a
line break inside a file name cannot be expressed, and such files are left out.

Paths are written ABSOLUTE, and ``root_folder`` stays empty: Caffe prepends ``root_folder`` verbatim,
and a sweep runs ``caffe train`` from each run's own folder, so relative paths would depend on the
working directory of every run. Absolute paths make a list file usable from anywhere.

Output is byte-identical for identical input: directory listings are sorted, every random choice comes
from ``random.Random`` seeded with a string (never from ``hash()``), and files are written as bytes.
"""
from __future__ import annotations

import csv
import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..layout import LABELS, LIST_TRAIN, LIST_VAL
from ..errors import InputError
from ..paths import write_atomic


# Formats Pillow may open that Caffe's OpenCV 4 imread also decodes (GIF, ICO, PSD... it does not).
CAFFE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "PPM", "WEBP"})


class SkippedFilesWarning(UserWarning):
    """Some files were left out of the lists; the message names each with its reason."""


@dataclass(frozen=True)
class ClassCount:
    """Images of one class in each split, and how many of its files were left out."""

    train: int
    val: int
    skipped: int

    @property
    def total(self) -> int:
        return self.train + self.val


@dataclass
class ListSet:
    """A split image set: ``(absolute path, label)`` pairs, label index -> class name, what was left out."""

    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, ClassCount] = field(default_factory=dict)
    source: str = ""


def check_image(path: str | os.PathLike) -> str | None:
    """Why Caffe could not use this file (``None`` when it can): opened, verified AND decoded with Pillow.

    ``verify()`` alone misses truncated files, so the image is decoded too. JPEGs decode at 1/8 scale
    (libjpeg's DCT scaling): every byte of the entropy-coded data is still read, so truncation is caught,
    at a fraction of the cost.
    """
    from PIL import Image, UnidentifiedImageError

    p = os.fspath(path)
    if "\n" in p or "\r" in p:
        return "line break in the file name (cannot be written to a Caffe list file)"
    try:
        if os.path.getsize(p) == 0:
            return "empty file"
        with Image.open(p) as im:
            fmt = im.format
            if fmt not in CAFFE_FORMATS:
                return f"{fmt} is not a format Caffe's OpenCV reads"
            im.verify()
        with Image.open(p) as im:
            if im.format in ("JPEG", "MPO"):
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except UnidentifiedImageError:
        return "not an image (Pillow cannot identify it)"
    except Image.DecompressionBombError as exc:
        return f"too large: {exc}"
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in msg.lower():
            return f"truncated ({msg})"
        return f"unreadable ({msg})"
    return None


def _check_many(paths: Sequence[str]) -> list[str | None]:
    """:func:`check_image` for each path, in order (Pillow decodes outside the GIL, so threads help)."""
    if len(paths) < 8:
        return [check_image(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(check_image, paths))


def _listdir_sorted(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _walk_files(folder: str) -> list[str]:
    """Every non-hidden file under ``folder``, in a sorted, filesystem-independent order."""
    out: list[str] = []
    for entry in _listdir_sorted(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            out += _walk_files(entry.path)
        elif entry.is_file():
            out.append(entry.path)
    return out


def _from_tree(root: Path, exclude: Iterable[os.PathLike | str]) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Folder-per-class tree -> {class name: sorted absolute file paths}, plus loose files left out."""
    excluded = {os.path.abspath(e) for e in exclude}
    classes: dict[str, list[str]] = {}
    loose: list[tuple[str, str]] = []
    for entry in _listdir_sorted(os.path.abspath(root)):
        if entry.name.startswith(".") or os.path.abspath(entry.path) in excluded:
            continue
        if entry.is_dir():
            classes[entry.name] = _walk_files(entry.path)
        elif entry.is_file():
            loose.append((entry.path, "not inside a class folder"))
    return classes, loose


def _from_csv(csv_path: Path) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """CSV of ``path,label`` (header optional; relative paths are relative to the CSV's folder)."""
    base = os.path.dirname(os.path.abspath(csv_path))
    classes: dict[str, list[str]] = {}
    skipped: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: cannot read CSV ({exc})") from None
    for lineno, row in enumerate(rows, 1):
        if not row or all(not c.strip() for c in row):
            continue
        if lineno == 1 and [c.strip().lower() for c in row] == ["path", "label"]:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise InputError(f"{csv_path}:{lineno}: expected 'path,label', got {','.join(row)!r}")
        path = os.path.join(base, row[0].strip())
        path = os.path.abspath(path)
        if path in seen:
            skipped.append((path, f"listed twice (lines {seen[path]} and {lineno})"))
            continue
        seen[path] = lineno
        if not os.path.isfile(path):
            skipped.append((path, "no such file"))
            continue
        classes.setdefault(row[1].strip(), []).append(path)
    return {k: sorted(v) for k, v in classes.items()}, skipped


def _sorted_names(names: Iterable[str]) -> list[str]:
    """Class order = label order: numeric when every name is an integer (CSV labels 0..K-1 keep their
    numbers), code-point order otherwise."""
    names = list(names)
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _select(names: list[str], classes: int | Sequence[str] | None, source: str) -> list[str]:
    if classes is None:
        return names
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if isinstance(classes, int) and not isinstance(classes, bool):
        if classes < 1:
            raise InputError(f"classes must be >= 1, got {classes}")
        if classes > len(names):
            raise InputError(f"asked for {classes} classes but {source} has {len(names)}")
        return names[:classes]
    wanted = [str(c) for c in classes]
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise InputError(f"unknown class {unknown[0]!r} in {source} (has: {', '.join(names[:20])}"
                         f"{', ...' if len(names) > 20 else ''})")
    if len(set(wanted)) != len(wanted):
        raise InputError(f"class listed twice in {', '.join(wanted)}")
    return [n for n in names if n in set(wanted)]


def n_val_for(n: int, val_fraction: float) -> int:
    """Validation images for a class of ``n``: round half up (20 at 0.1 -> 2, 500 -> 50), at least one
    when ``val_fraction > 0`` and the class has two or more, and never the whole class."""
    if n <= 1 or val_fraction <= 0:
        return 0
    k = int(n * val_fraction + 0.5 + 1e-9)
    return min(max(k, 1), n - 1)


def scan(root_or_csv: str | os.PathLike, *, val_fraction: float = 0.1, seed: int = 0,
         classes: int | Sequence[str] | None = None, per_class: int | None = None,
         exclude: Iterable[str | os.PathLike] = ()) -> ListSet:
    """Split a folder-per-class tree (or a ``path,label`` CSV) into stratified, shuffled train/val lists.

    ``classes``: an int keeps the first N classes in sorted order; a list of names keeps those (labels
    follow sorted order either way). ``per_class`` caps images per class with a seeded random draw; only
    drawn files are opened. ``exclude`` names folders under the root to ignore (e.g. the lists' own
    output folder). Unusable files are left out, recorded in ``skipped`` and reported in ONE
    :class:`SkippedFilesWarning`; a class with no usable image, or no images at all, is an InputError.
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if per_class is not None and per_class < 1:
        raise InputError(f"per_class must be >= 1, got {per_class}")
    src = Path(root_or_csv)
    if src.is_dir():
        found, skipped = _from_tree(src, exclude)
        if not found:
            hint = f" ({len(skipped)} loose files; expected one sub-folder per class)" if skipped else ""
            raise InputError(f"{src}: no class folders found{hint}")
    elif src.is_file():
        found, skipped = _from_csv(src)
        if not found:
            raise InputError(f"{src}: no images listed")
    else:
        raise InputError(f"{src}: no such folder or CSV file")

    names = _select(_sorted_names(found), classes, str(src))
    bad_name = next((n for n in names if "\n" in n or "\r" in n), None)
    if bad_name is not None:
        raise InputError(f"class name {bad_name!r} contains a line break")

    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    counts: dict[str, ClassCount] = {}
    for label, name in enumerate(names):
        rng = random.Random(f"caffegen.lists:{seed}:{name}")
        files = list(found[name])
        if per_class is not None:
            rng.shuffle(files)
        good: list[str] = []
        class_skipped = 0
        pos = 0
        want = len(files) if per_class is None else per_class
        while len(good) < want and pos < len(files):
            chunk = files[pos:pos + (want - len(good))]
            pos += len(chunk)
            for path, reason in zip(chunk, _check_many(chunk)):
                if reason is None:
                    good.append(path)
                else:
                    skipped.append((path, reason))
                    class_skipped += 1
        if not good:
            what = "is empty" if not files else f"has no usable image ({len(files)} files, all left out)"
            raise InputError(f"class {name!r} {what}")
        good.sort()
        rng.shuffle(good)
        k = n_val_for(len(good), val_fraction)
        val += [(p, label) for p in good[:k]]
        train += [(p, label) for p in good[k:]]
        counts[name] = ClassCount(train=len(good) - k, val=k, skipped=class_skipped)

    random.Random(f"caffegen.lists:{seed}:train").shuffle(train)
    random.Random(f"caffegen.lists:{seed}:val").shuffle(val)
    listset = ListSet(train=train, val=val, labels=names, skipped=skipped, counts=counts, source=str(src))
    if skipped:
        warnings.warn(SkippedFilesWarning(skipped_message(skipped)), stacklevel=2)
    return listset


def skipped_message(skipped: Sequence[tuple[str, str]]) -> str:
    """One warning naming every file left out, with its reason."""
    head = f"left out {len(skipped)} file{'s' if len(skipped) != 1 else ''}:"
    return "\n  ".join([head, *(f"{path}: {reason}" for path, reason in skipped)])


def _list_bytes(items: Sequence[tuple[str, int]]) -> bytes:
    return b"".join(os.fsencode(p) + b" " + str(label).encode() + b"\n" for p, label in items)


def write_lists(listset: ListSet, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``list_train_shuffle.txt``, ``list_val_shuffle.txt`` (``<abs path> <label>`` per line, use
    with an empty ``root_folder``) and ``labels.txt`` (line i = name of label i). Each file is replaced
    atomically, so a crash never leaves half a list."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror}") from None
    files = {"train": out / LIST_TRAIN, "val": out / LIST_VAL, "labels": out / LABELS}
    write_atomic(files["train"], _list_bytes(listset.train))
    write_atomic(files["val"], _list_bytes(listset.val))
    write_atomic(files["labels"], b"".join(os.fsencode(n) + b"\n" for n in listset.labels))
    return files


def read_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Parse a list file the way Caffe does: split each line at its last space."""
    items = []
    for line in Path(path).read_bytes().split(b"\n"):
        if not line:
            continue
        pos = line.rfind(b" ")
        items.append((os.fsdecode(line[:pos]), int(line[pos + 1:])))
    return items


def load_list(path: str | os.PathLike, missing_hint: str = "") -> list[tuple[str, int]]:
    """:func:`read_list` for a list a user names: a missing file, a line that is not ``path label`` and an empty list
    are each one error line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: list file not found{missing_hint}")
    try:
        items = read_list(path)
    except ValueError:
        raise InputError(f"{path}: a line is not 'path label' (an integer label after the last space)") from None
    if not items:
        raise InputError(f"{path}: no images listed")
    return items


FEW_VAL = 3   # fewer val images than this per class and its accuracy is a coin toss (one image is 33 points)


def thin_classes(listset: ListSet, val_fraction: float, few: int = FEW_VAL) -> list[str]:
    """One warning line per class that gets no val image or fewer than ``few`` (its accuracy is then barely
    measured, and a class without val images is ignored by every test pass), with the fix."""
    out = []
    for label, name in enumerate(listset.labels):
        c = listset.counts[name]
        if c.val >= few:
            continue
        n = c.train + c.val
        need = next(m for m in range(n + 1, n + 10_000) if n_val_for(m, val_fraction or 0.1) >= few)
        fix = f"give it {need - n} more image{'s' * (need - n > 1)}"
        if n > few:
            f = next((k / 100 for k in range(1, 100) if n_val_for(n, k / 100) >= few), None)
            if f is not None and f > val_fraction:
                fix += f" or set val_fraction {f:g}"
        what = "no val image: it is never tested" if c.val == 0 else \
            f"only {c.val} val image{'s' * (c.val > 1)}: its accuracy is barely measured"
        out.append(f"class {name!r} (label {label}) has {what} ({n} image{'s' * (n != 1)} in all); {fix}")
    return out


def format_counts(listset: ListSet) -> str:
    """The per-class table ``caffegen lists`` prints: label, class, train, val, skipped."""
    width = max([len("class"), *(len(n) for n in listset.labels)])
    lines = [f"{'label':>5}  {'class':<{width}}  {'train':>6}  {'val':>5}  {'skipped':>7}"]
    for label, name in enumerate(listset.labels):
        c = listset.counts[name]
        lines.append(f"{label:>5}  {name:<{width}}  {c.train:>6}  {c.val:>5}  {c.skipped:>7}")
    t = sum(c.train for c in listset.counts.values())
    v = sum(c.val for c in listset.counts.values())
    lines.append(f"{'':>5}  {'total':<{width}}  {t:>6}  {v:>5}  {len(listset.skipped):>7}")
    return "\n".join(lines)
