"""Offline augmentation of the TRAIN list (seed 002: rotation, shift, shear, zoom, flip when data is small).

Caffe 1.0's data layers only crop and mirror, so the other transforms are applied once, before training: each
training image gets ``copies`` augmented copies (Pillow, one affine transform about the image centre, edges filled
with the image's mean colour, then a horizontal flip half of the time), and the train list lists the originals and
the copies, shuffled. The val list is never touched.

Deterministic and cached: a copy's random parameters come from the hash of the source image's bytes, the
augmentation's parameters and the copy's number, and the copy is stored under that hash in
``<cache>/augment/`` (PNG, lossless), so the same images and parameters give byte-identical lists and files,
and are made only once.

Written as ``rotate=15,shift=0.1,shear=0.1,zoom=0.1,flip,copies=2`` (any subset; ``flip`` alone turns it on), as a
TOML table with those keys, or as a preset: ``none``, ``light``, ``strong``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..paths import cache_root, write_atomic
from ..layout import LIST_TRAIN
from .lists import read_list

__all__ = ["Augment", "PRESETS", "parse_augment", "augment_items", "augment_list", "affine"]

PRESETS = {
    "none": "copies=0",
    "light": "rotate=10,shift=0.05,zoom=0.05,flip,copies=1",
    "strong": "rotate=20,shift=0.1,shear=0.1,zoom=0.15,flip,copies=3",
}


@dataclass(frozen=True)
class Augment:
    """Ranges of the random transforms (each drawn uniformly in [-x, x]) and how many copies per image."""

    rotate: float = 0.0      # degrees
    shift: float = 0.0       # fraction of the width (x) and height (y)
    shear: float = 0.0       # shear factor: x' = x + shear * y
    zoom: float = 0.0        # scale in [1 - zoom, 1 + zoom]
    flip: bool = False       # horizontal flip with probability 0.5
    copies: int = 2          # augmented copies per training image (0: none)
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.copies > 0

    def canonical(self) -> str:
        """The parameters as one stable string (part of every copy's cache key)."""
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        parts = [f"{k}={getattr(self, k):g}" for k in ("rotate", "shift", "shear", "zoom") if getattr(self, k)]
        return ",".join(parts + (["flip"] if self.flip else []) + [f"copies={self.copies}"])


_LIMITS = {"rotate": (0.0, 180.0), "shift": (0.0, 0.5), "shear": (0.0, 1.0), "zoom": (0.0, 0.9)}
_KEYS = [f.name for f in fields(Augment)]


def parse_augment(value: Any, where: str = "--augment") -> Augment | None:
    """A preset name, ``k=v,...`` text or a table -> :class:`Augment` (None for ``none``/empty); one-line
    InputError naming the bad part otherwise."""
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, str):
        text = PRESETS.get(value.strip(), value)
        table: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            key, eq, raw = part.partition("=")
            key = key.strip()
            table[key] = True if not eq else raw.strip()
        if not table:
            raise InputError(f"{where}: empty augmentation {value!r}")
    elif isinstance(value, dict):
        table = dict(value)
    else:
        raise InputError(f"{where}: expected a preset ({', '.join(PRESETS)}), 'rotate=15,flip,...' or a table, "
                         f"got {value!r}")
    out: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in _KEYS:
            from ..checks import nearest

            raise InputError(f"{where}: unknown augmentation {key!r}{nearest(key, set(_KEYS))} (keys: "
                             f"{', '.join(_KEYS)}; presets: {', '.join(PRESETS)})")
        try:
            if key == "flip":
                out[key] = raw if isinstance(raw, bool) else {"true": True, "1": True, "false": False,
                                                              "0": False}[str(raw).lower()]
            elif key in ("copies", "seed"):
                if isinstance(raw, bool) or float(raw) != int(float(raw)):
                    raise ValueError
                out[key] = int(float(raw))
            else:
                if isinstance(raw, bool):
                    raise ValueError
                out[key] = float(raw)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: {key}={raw!r} is not {'true/false' if key == 'flip' else 'a number'}") \
                from None
        if key in _LIMITS:
            lo, hi = _LIMITS[key]
            if not (math.isfinite(out[key]) and lo <= out[key] <= hi):
                raise InputError(f"{where}: {key}={raw} is outside [{lo:g}, {hi:g}]")
    if not 0 <= out.get("copies", 2) <= 100:
        raise InputError(f"{where}: copies={out['copies']} is outside [0, 100]")
    if out.get("seed", 0) < 0:
        raise InputError(f"{where}: seed must be >= 0")
    aug = Augment(**out)
    return aug if aug.active else None


def affine(width: int, height: int, *, angle: float, dx: float, dy: float, shear: float, scale: float,
           flip: bool) -> tuple[float, ...]:
    """Pillow's AFFINE data (output pixel -> input pixel) for: flip, zoom, shear and rotate about the centre,
    then shift by (dx, dy) pixels. Pure."""
    cx, cy = width / 2.0, height / 2.0
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    f = -1.0 if flip else 1.0
    # forward (input centred -> output centred): R @ Sh @ Z @ F
    m00, m01 = cos * scale * f, (cos * shear - sin) * scale
    m10, m11 = sin * scale * f, (sin * shear + cos) * scale
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    # input = inv @ (out - c - d) + c
    ox, oy = cx + dx, cy + dy
    return (i00, i01, cx - i00 * ox - i01 * oy, i10, i11, cy - i10 * ox - i11 * oy)


def _draw(aug: Augment, key: str) -> dict[str, Any]:
    rng = random.Random(key)
    return {"angle": rng.uniform(-aug.rotate, aug.rotate), "sx": rng.uniform(-aug.shift, aug.shift),
            "sy": rng.uniform(-aug.shift, aug.shift), "shear": rng.uniform(-aug.shear, aug.shear),
            "scale": 1.0 + rng.uniform(-aug.zoom, aug.zoom), "flip": aug.flip and rng.random() < 0.5}


def _copy(src: str, aug: Augment, k: int, store: Path) -> str:
    """The k-th augmented copy of ``src`` (made once, then found in the cache by its key)."""
    from PIL import Image, ImageStat

    with open(src, "rb") as fh:
        content = hashlib.sha256(fh.read()).hexdigest()
    key = hashlib.sha256(f"{content}\n{aug.canonical()}\n{k}".encode()).hexdigest()
    out = store / key[:2] / f"{key}.png"
    if out.is_file():
        return str(out)
    p = _draw(aug, key)
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        fill = tuple(int(round(v)) for v in ImageStat.Stat(im).mean)
        data = affine(w, h, angle=p["angle"], dx=p["sx"] * w, dy=p["sy"] * h, shear=p["shear"], scale=p["scale"],
                      flip=p["flip"])
        res = im.transform((w, h), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR, fillcolor=fill)
        buf = _png_bytes(res)
    write_atomic(out, buf)
    return str(out)


def _png_bytes(im) -> bytes:
    import io

    b = io.BytesIO()
    im.save(b, format="PNG", optimize=False)
    return b.getvalue()


def augment_items(items: list[tuple[str, int]], aug: Augment, *, store: Path | None = None,
                  progress: Callable[[int, int], None] | None = None, workers: int | None = None) \
        -> list[tuple[str, int]]:
    """The originals and ``aug.copies`` copies of each, shuffled (seeded): the augmented train list's lines."""
    store = store or cache_root() / "augment"
    jobs = [(path, label, k) for path, label in items for k in range(aug.copies)]
    done = 0
    out: list[tuple[str, int]] = []
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        futures = [(label, pool.submit(_copy, path, aug, k, store)) for path, label, k in jobs]
        for label, fut in futures:
            try:
                out.append((fut.result(), label))
            except OSError as exc:
                raise InputError(f"augment: cannot read or write an image: {exc}") from None
            done += 1
            if progress:
                progress(done, len(jobs))
    lines = list(items) + out
    random.Random(f"augment-{aug.seed}-{len(lines)}").shuffle(lines)
    return lines


def augment_list(train_list: Path, aug: Augment, out_dir: Path, *, root_folder: str = "",
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``out_dir/list_train_shuffle.txt``: ``train_list``'s images (made absolute with ``root_folder``) and
    their augmented copies, plus ``augment.json`` saying how it was made; return the list's path."""
    items = [(p if Path(p).is_absolute() else os.path.abspath(root_folder + p), label)
             for p, label in read_list(train_list)]
    lines = augment_items(items, aug, progress=progress)
    out = Path(out_dir) / LIST_TRAIN
    write_atomic(out, b"".join(os.fsencode(p) + b" " + str(label).encode() + b"\n" for p, label in lines))
    write_atomic(Path(out_dir) / "augment.json", json.dumps(
        {"augment": asdict(aug), "describe": aug.describe(), "from": str(train_list), "originals": len(items),
         "copies": len(lines) - len(items)}, indent=2) + "\n")
    return out
