"""The embedded demo dataset: a deterministic synthetic stand-in for GHIM-10k, generated in seconds.

Same shape as GHIM-10k (one folder per class, JPEG, 400x300 and 300x400 mixed) so the seed's data path
(ImageData, resize 256, crop 224) runs unchanged, and ``make sweep`` works without a download.

Each class is one combination of an object SHAPE (10 kinds), a HUE (20 evenly spaced, permuted so that
neighbouring classes are far apart) and a fill TEXTURE (4 kinds); classes k and k+10 share a shape but
have opposite hues. Within a class every image varies: position, scale, aspect, rotation, one or two
instances, hue/saturation/value jitter, a random smooth background, desaturated clutter (lines, blobs,
boxes), global brightness and pixel noise. A net must find the saturated object among the clutter, so
a good learning rate learns it in a few hundred iterations at 64 px and a bad one visibly does not.

Determinism: every image draws from ``numpy.random.default_rng([seed, class, index])`` and is encoded
with fixed JPEG settings, so the same arguments give byte-identical files on the same Pillow/libjpeg.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MAX_CLASSES = 20
DEFAULT_PER_CLASS = 50
MANIFEST = ".caffegen-demo.json"  # hidden: `caffegen lists` skips dotfiles silently
JPEG_SETTINGS = {"quality": 90, "optimize": False, "progressive": False, "subsampling": 2}

SHAPES = ("disc", "square", "triangle", "cross", "ring", "star", "crescent", "bar", "chevron", "bowtie")
HUE_NAMES = ("red", "vermilion", "orange", "amber", "yellow", "chartreuse", "lime", "green", "emerald",
             "spring", "cyan", "azure", "cerulean", "blue", "indigo", "violet", "purple", "magenta",
             "fuchsia", "rose")
TEXTURES = ("solid", "stripes", "dots", "checker")


@dataclass(frozen=True)
class DemoClass:
    """What makes a class: its shape, its hue (0..1) and its fill texture."""

    name: str
    shape: str
    hue: float
    texture: str


def class_table(n: int = MAX_CLASSES) -> list[DemoClass]:
    """The first ``n`` demo classes (names sort in label order: ``00_red_disc``, ``01_...``)."""
    out = []
    for k in range(n):
        h = (k * 7) % 20
        shape = SHAPES[k % len(SHAPES)]
        texture = TEXTURES[(k // 2 + k // 10) % len(TEXTURES)]
        out.append(DemoClass(f"{k:02d}_{HUE_NAMES[h]}_{shape}", shape, h / 20.0, texture))
    return out


@dataclass
class DemoSummary:
    """What :func:`generate` wrote (also stored as the hidden manifest in the dataset folder)."""

    out_dir: str
    classes: list[str]
    per_class: int
    images: int
    seed: int
    size: tuple[int, int]
    seconds: float
    reused: bool = False


# ---------------------------------------------------------------------------------------------- drawing
def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def _shape_polys(shape: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """Unit-circle outlines: ('fill'|'cut', polygon or ellipse box)."""
    if shape == "disc":
        return [("ellipse", [(-1, -1), (1, 1)])]
    if shape == "ring":
        return [("ellipse", [(-1, -1), (1, 1)]), ("cut_ellipse", [(-0.55, -0.55), (0.55, 0.55)])]
    if shape == "crescent":
        return [("ellipse", [(-1, -1), (1, 1)]), ("cut_ellipse", [(-0.55, -1.05), (1.25, 0.75)])]
    if shape == "square":
        return [("polygon", _regular(4, 1.0, math.pi / 4))]
    if shape == "triangle":
        return [("polygon", _regular(3, 1.0))]
    if shape == "star":
        pts = []
        for i in range(10):
            rr = 1.0 if i % 2 == 0 else 0.42
            a = -math.pi / 2 + math.pi * i / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        return [("polygon", pts)]
    if shape == "cross":
        w = 0.32
        return [("polygon", [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                          (-1, w), (-1, -w), (-w, -w)])]
    if shape == "bar":
        return [("polygon", [(-1, -0.28), (1, -0.28), (1, 0.28), (-1, 0.28)])]
    if shape == "chevron":
        return [("polygon", [(-0.9, -0.8), (0.1, 0.0), (-0.9, 0.8), (-0.4, 0.8), (0.6, 0.0), (-0.4, -0.8)])]
    if shape == "bowtie":
        return [("polygon", [(-0.95, -0.8), (0.0, 0.0), (-0.95, 0.8)]), ("polygon", [(0.95, -0.8), (0.0, 0.0), (0.95, 0.8)])]
    raise ValueError(shape)


def _mask(shape: str, r: int, sx: float, sy: float, angle: float):
    """An L-mode mask of the shape, radius ``r`` px, squashed by (sx, sy), rotated by ``angle`` deg."""
    from PIL import Image, ImageDraw

    size = 2 * r + 4
    c = size / 2
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    for kind, pts in _shape_polys(shape):
        xy = [(c + x * r * sx, c + y * r * sy) for x, y in pts]
        if kind == "polygon":
            d.polygon(xy, fill=255)
        elif kind == "ellipse":
            d.ellipse(xy, fill=255)
        else:
            d.ellipse(xy, fill=0)
    return m.rotate(angle, resample=Image.BICUBIC)


def _texture(kind: str, size: int, c1: tuple[int, int, int], c2: tuple[int, int, int],
             rng: np.random.Generator, r: int) -> np.ndarray:
    """An RGB fill of ``size``x``size``: two tones in a pattern whose period scales with the object."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a = rng.uniform(0, math.pi)
    period = max(4.0, r * rng.uniform(0.35, 0.55))
    if kind == "solid":
        t = (xx * math.cos(a) + yy * math.sin(a)) / max(size, 1) * 0.5  # gentle gradient
        t = np.clip(t - t.min(), 0, 1)
    elif kind == "stripes":
        t = (np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period) > 0).astype(np.float32)
    elif kind == "dots":
        u = (xx * math.cos(a) + yy * math.sin(a)) % period - period / 2
        v = (-xx * math.sin(a) + yy * math.cos(a)) % period - period / 2
        t = ((u * u + v * v) < (period * 0.3) ** 2).astype(np.float32)
    else:  # checker
        u = np.floor((xx * math.cos(a) + yy * math.sin(a)) / period)
        v = np.floor((-xx * math.sin(a) + yy * math.cos(a)) / period)
        t = ((u + v) % 2).astype(np.float32)
    c1a, c2a = np.array(c1, np.float32), np.array(c2, np.float32)
    return (c1a * (1 - t[..., None]) + c2a * t[..., None]).astype(np.uint8)


def _background(w: int, h: int, rng: np.random.Generator, hue: float):
    """A smooth field of low-saturation colours (a few coarse cells, upsampled bilinearly); tinted with
    the class hue 70% of the time, as a scene's light and setting go with its subject."""
    from PIL import Image

    gw, gh = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    base_h = hue + rng.normal(0, 0.04) if rng.random() < 0.7 else rng.uniform(0, 1)
    base_v = rng.uniform(0.25, 0.9)
    cells = np.empty((gh, gw, 3), np.uint8)
    for j in range(gh):
        for i in range(gw):
            cells[j, i] = _hsv(base_h + rng.normal(0, 0.05), rng.uniform(0.05, 0.4),
                               base_v + rng.normal(0, 0.12))
    return Image.fromarray(cells, "RGB").resize((w, h), Image.BILINEAR)


def _clutter(img, rng: np.random.Generator) -> None:
    """Desaturated distractors: lines, blobs, boxes (the object stays the only saturated thing)."""
    from PIL import ImageDraw

    w, h = img.size
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        col = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.1, 0.95))
        x0, y0 = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        s = float(rng.uniform(0.04, 0.16) * min(w, h))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            x1, y1 = x0 + rng.normal(0, 3 * s), y0 + rng.normal(0, 3 * s)
            d.line([(x0, y0), (float(x1), float(y1))], fill=col, width=int(rng.integers(2, 7)))
        elif kind == 1:
            d.ellipse([(x0 - s, y0 - s * rng.uniform(0.4, 1)), (x0 + s, y0 + s * rng.uniform(0.4, 1))], fill=col)
        else:
            d.rectangle([(x0, y0), (x0 + s * rng.uniform(0.5, 2), y0 + s * rng.uniform(0.5, 2))], fill=col)


def render_image(cls: DemoClass, rng: np.random.Generator, size: tuple[int, int] = (400, 300)):
    """One demo image of class ``cls`` (a PIL RGB image), landscape or portrait at random."""
    from PIL import Image

    w, h = size
    if rng.random() < 0.5:
        w, h = h, w
    img = _background(w, h, rng, cls.hue)
    _clutter(img, rng)
    for _ in range(1 if rng.random() < 0.75 else 2):
        r = int(rng.uniform(0.2, 0.38) * min(w, h))
        hue = cls.hue + rng.normal(0, 0.008)
        sat, val = rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0)
        c1 = _hsv(hue, sat, val)
        c2 = _hsv(hue + rng.normal(0, 0.01), sat * rng.uniform(0.3, 0.6), val * rng.uniform(0.45, 0.7))
        aspect = rng.uniform(0.8, 1.2)
        m = _mask(cls.shape, r, aspect, 1 / aspect, float(rng.uniform(0, 360)))
        tex = Image.fromarray(_texture(cls.texture, m.size[0], c1, c2, rng, r), "RGB")
        x = int(rng.uniform(0.15, 0.85) * w) - m.size[0] // 2
        y = int(rng.uniform(0.15, 0.85) * h) - m.size[1] // 2
        img.paste(tex, (x, y), m)
    arr = np.asarray(img, dtype=np.float32)
    arr *= np.float32(rng.uniform(0.85, 1.15))
    noise = rng.standard_normal((h, w, 1), dtype=np.float32)  # sensor-like luma noise
    noise *= np.float32(rng.uniform(3, 10))
    arr += noise
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------- dataset
def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def generate(out_dir: str | os.PathLike, *, classes: int = MAX_CLASSES, per_class: int = DEFAULT_PER_CLASS,
             seed: int = 0, size: tuple[int, int] = (400, 300)) -> DemoSummary:
    """Write ``classes`` folders of ``per_class`` JPEGs into ``out_dir`` and return what was written.

    Idempotent: when ``out_dir`` already holds a complete demo set made with the same arguments it is
    reused untouched. The set is built in a sibling temp folder and renamed into place at the end, so an
    interrupted run leaves nothing half-written; an existing non-empty ``out_dir`` that is not the same
    demo set is never overwritten (InputError).
    """
    if not 1 <= classes <= MAX_CLASSES:
        raise InputError(f"classes must be 1..{MAX_CLASSES}, got {classes}")
    if per_class < 1:
        raise InputError(f"per_class must be >= 1, got {per_class}")
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    w, h = size
    if w < 32 or h < 32:
        raise InputError(f"size must be at least 32x32, got {w}x{h}")
    out = Path(out_dir)
    table = class_table(classes)
    wanted = {"classes": [c.name for c in table], "per_class": per_class, "seed": seed, "size": [w, h]}
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out} exists and is not a folder")
        old = _read_manifest(out)
        if old and {k: old.get(k) for k in wanted} == wanted:
            return DemoSummary(out_dir=str(out), classes=old["classes"], per_class=per_class,
                               images=int(old.get("images", classes * per_class)), seed=seed, size=(w, h),
                               seconds=0.0, reused=True)
        if any(out.iterdir()):
            what = "a demo set made with other arguments" if old else "not empty"
            raise InputError(f"{out} is {what}; pick another folder or remove it first")

    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for cls in table:
            (tmp / cls.name).mkdir(parents=True)

        def one(job: tuple[int, int]) -> None:
            k, i = job
            cls = table[k]
            img = render_image(cls, np.random.default_rng([seed, k, i]), (w, h))
            img.save(tmp / cls.name / f"{cls.name}_{i:04d}.jpg", "JPEG", **JPEG_SETTINGS)

        # Each image has its own generator, so threads (numpy and Pillow release the GIL) keep it exact.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(one, [(k, i) for k in range(classes) for i in range(per_class)]))
        summary = DemoSummary(out_dir=str(out), classes=wanted["classes"], per_class=per_class,
                              images=classes * per_class, seed=seed, size=(w, h),
                              seconds=round(time.perf_counter() - t0, 3))
        manifest = {**wanted, "images": summary.images}  # no timings: the folder stays byte-identical
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
