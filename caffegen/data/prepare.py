"""The fast input path: list files -> LMDB with Caffe's own ``convert_imageset``.

``ImageData`` decodes and resizes every JPEG on every epoch; an LMDB holds the images already decoded
and resized (raw pixels), so the ``Data`` layer only copies bytes. The crop, mirror and mean stay in
``transform_param`` and are applied per batch exactly as with ``ImageData``.

Cost: raw pixels take ``resize * resize * 3`` bytes per image (192 KiB at 256), roughly 7x the JPEGs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import CaffegenError, InputError
from .lists import load_list

_FATAL = re.compile(r"^F\d{4}")
_PROCESSED = re.compile(r"Processed (\d+) files")
_FAILED = re.compile(r"Could not open or find file (.*)$")


def convert_command(tool: str | os.PathLike, list_file: str | os.PathLike, db: str | os.PathLike, *,
                    root_folder: str = "", resize: int = 256, shuffle: bool = True,
                    gray: bool = False) -> list[str]:
    """The ``convert_imageset`` argv (pure: what :func:`to_lmdb` runs, shown by ``--dry-run`` users)."""
    argv = [os.fspath(tool), f"--resize_height={resize}", f"--resize_width={resize}",
            f"--shuffle={'true' if shuffle else 'false'}", f"--gray={'true' if gray else 'false'}",
            "--backend=lmdb", root_folder, os.fspath(list_file), os.fspath(db)]
    return argv


def to_lmdb(list_file: str | os.PathLike, out_dir: str | os.PathLike, *, root_folder: str = "",
            resize: int = 256, shuffle: bool = True, gray: bool = False, overwrite: bool = False) -> Path:
    """Convert one ImageData list file into the LMDB ``out_dir`` (resized to ``resize`` x ``resize``;
    0 keeps each image's size) and return its path.

    ``root_folder`` is prepended verbatim to every path, as in ImageData (empty for caffegen's absolute
    lists). The LMDB is built beside ``out_dir`` and renamed into place only when every image converted,
    so a failure never leaves half a database; an existing ``out_dir`` is replaced only with ``overwrite``.
    Raises CaffegenError with Caffe's first fatal line, or naming the first image it could not read.
    """
    from ..toolchain import locate

    list_path = Path(list_file)
    if resize < 0:
        raise InputError(f"resize must be >= 0, got {resize}")
    items = load_list(list_path, missing_hint=" (run `caffegen lists` first)")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; remove it or pass overwrite (--force)")

    inst = locate()
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    argv = convert_command(inst.tool("convert_imageset"), list_path, tmp, root_folder=root_folder,
                           resize=resize, shuffle=shuffle, gray=gray)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", env=inst.env())
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            fatal = next((ln for ln in log.splitlines() if _FATAL.match(ln)), None)
            raise CaffegenError(f"convert_imageset failed on {list_path} (exit {proc.returncode}): "
                                f"{fatal or log.strip().splitlines()[-1:] or 'no output'}")
        failed = [m.group(1).strip() for m in map(_FAILED.search, log.splitlines()) if m]
        done = [int(m.group(1)) for m in map(_PROCESSED.search, log.splitlines()) if m]
        if failed or not done or done[-1] != len(items):
            first = f"; first: {failed[0]}" if failed else ""
            raise CaffegenError(f"convert_imageset converted {done[-1] if done else 0} of {len(items)} "
                                f"images from {list_path}{first}")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def prepare_lmdb(lists_dir: str | os.PathLike, out_dir: str | os.PathLike, *, resize: int = 256,
                 val_resize: int | None = None, gray: bool = False, overwrite: bool = False) -> dict[str, Path]:
    """Convert ``list_train_shuffle.txt`` and ``list_val_shuffle.txt`` of ``lists_dir`` into
    ``out_dir/train_lmdb`` and ``out_dir/val_lmdb`` (val at ``val_resize``, default ``resize``)."""
    from ..layout import LIST_TRAIN, LIST_VAL

    lists = Path(lists_dir)
    out = Path(out_dir)
    result = {}
    for split, name, size, shuffle in (("train", LIST_TRAIN, resize, True),
                                       ("val", LIST_VAL, resize if val_resize is None else val_resize, False)):
        result[split] = to_lmdb(lists / name, out / f"{split}_lmdb", resize=size, shuffle=shuffle,
                                gray=gray, overwrite=overwrite)
    return result


def compute_mean(lmdb: str | os.PathLike, out_file: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The mean image of an LMDB with Caffe's own ``compute_image_mean`` (a ``.binaryproto``, what a net's
    ``transform_param { mean_file }`` reads); written beside ``out_file`` and renamed into place."""
    from ..toolchain import locate

    db, out = Path(lmdb), Path(out_file)
    if not (db / "data.mdb").is_file():
        raise InputError(f"{db}: no LMDB here (make one with `caffegen prepare --lmdb`)")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; remove it or pass overwrite (--force)")
    inst = locate()
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([str(inst.tool("compute_image_mean")), "--backend=lmdb", str(db), str(tmp)],
                              capture_output=True, text=True, errors="replace", env=inst.env())
        if proc.returncode != 0 or not tmp.is_file():
            log = proc.stdout + proc.stderr
            fatal = next((ln for ln in log.splitlines() if _FATAL.match(ln)), None)
            raise CaffegenError(f"compute_image_mean failed on {db} (exit {proc.returncode}): "
                                f"{fatal or log.strip().splitlines()[-1:] or 'no output'}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def is_lmdb(path: str | os.PathLike) -> bool:
    """A folder holding an LMDB (``data.mdb``), as ``convert_imageset`` writes one."""
    return (Path(path) / "data.mdb").is_file()


def lmdb_labels(path: str | os.PathLike) -> dict[int, int]:
    """How many records of each label an LMDB of Caffe ``Datum`` records holds (one pass over it: a tune counts
    its images and classes this way). An empty or unreadable one: one InputError line."""
    import lmdb

    from ..toolchain import caffe_pb2

    datum = caffe_pb2().Datum()
    counts: dict[int, int] = {}
    try:
        with lmdb.open(os.fspath(path), readonly=True, lock=False) as env, env.begin() as txn:
            for _, value in txn.cursor():
                datum.ParseFromString(value)
                counts[datum.label] = counts.get(datum.label, 0) + 1
    except lmdb.Error as exc:
        raise InputError(f"{path}: not a readable LMDB ({exc})") from None
    except Exception as exc:       # a record that is not a Datum (protobuf's DecodeError)
        raise InputError(f"{path}: its records are not Caffe Datum records ({type(exc).__name__})") from None
    if not counts:
        raise InputError(f"{path}: an empty LMDB")
    return counts
