"""What the tests share besides fixtures (conftest.py): tiny image sets and list files, the tiny net and sweep
specs every real-caffe test trains in seconds, and a pixel count for figure tests."""
from __future__ import annotations

import random
from pathlib import Path


def make_imageset(root: Path, classes: int = 3, per_class: int = 8, size: tuple[int, int] = (40, 30),
                  seed: int = 0) -> list[tuple[Path, int]]:
    """Write ``classes`` folders of small JPEGs whose colour depends on the class; return (path, label)."""
    from PIL import Image

    rng = random.Random(seed)
    items = []
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = [(60 + 90 * label) % 256, (200 - 70 * label) % 256, (30 * label + 40) % 256]
            colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in base)
            img = Image.new("RGB", size, colour)
            path = folder / f"img_{i:03d}.jpg"
            img.save(path, quality=90)
            items.append((path, label))
    return items


def write_list(path: Path, items: list[tuple[Path, int]], root: Path | None = None) -> Path:
    """An ImageData list file: ``relative/or/absolute/path label`` per line."""
    lines = [f"{p.relative_to(root) if root else p} {label}" for p, label in items]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_net(train_batch: int = 8, test_batch: int = 8, batchnorm: bool = True, classes: int = 3) -> str:
    """The ``[net]`` table of a narrow template net on 32x32 crops of 3 classes: a caffe run of it takes seconds."""
    return (f"[net]\nnum_classes = {classes}\nresize = 36\ntest_resize = 32\ncrop = 32\nconv_widths = [8, 8, 16, 16, 16]\n"
            f"train_batch = {train_batch}\ntest_batch = {test_batch}\nbatchnorm = {str(batchnorm).lower()}\n")


# A sweep spec over a tiny demo set and a narrow net: each caffe run takes a second or two.
TINY = """
name = "{name}"
[data]
demo = {{ classes = 3, per_class = 10, seed = 0 }}
""" + tiny_net().replace("{", "{{").replace("}", "}}") + """[solver]
max_iter = {max_iter}
test_interval = {test_interval}
display = {display}
random_seed = 0
{solver}
[grid]
base_lr = {lrs}
lr_policy = {policies}
[run]
jobs = {jobs}
"""


def write_spec(tmp_path: Path, name="t", max_iter=20, test_interval=10, display=5, lrs="[0.01]",
               policies='["fixed"]', jobs=1, solver: str = "") -> Path:
    """``solver``: more ``[solver]`` lines (a schedule's parameters)."""
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(name=name, max_iter=max_iter, test_interval=test_interval, display=display,
                                lrs=lrs, policies=policies, jobs=jobs, solver=solver))
    return path


def own_net_spec(folder: Path, name: str, prototxt: str, classes: int, *, net_extra: str = "", data: str = "",
                 lrs: str = "[0.01]", max_iter: int = 10, test_interval: int = 5, jobs: int = 1) -> Path:
    """A sweep spec over your own net ``prototxt`` (as the spec names it): ``classes`` classes of demo data (or the
    ``data`` lines), ``net_extra`` more ``[net]`` lines, lr_policy fixed, a snapshot at the end."""
    path = folder / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
[data]
{data or f"demo = {{ classes = {classes}, per_class = 6, seed = 0 }}"}
[net]
prototxt = "{prototxt}"
{net_extra}
[solver]
max_iter = {max_iter}
test_interval = {test_interval}
display = 1
snapshot = {max_iter}
[grid]
base_lr = {lrs}
lr_policy = ["fixed"]
[run]
jobs = {jobs}
""")
    return path


TAB = {"blue": (31, 119, 180), "orange": (255, 127, 14), "green": (44, 160, 44), "red": (255, 0, 0),
       "purple": (148, 103, 189), "tab:red": (214, 39, 40)}   # matplotlib's tab: colours and pure red, as the figures draw them


def pixels_like(png, colour: str | tuple[int, int, int], tol: int = 40) -> int:
    """How many pixels of a PNG (a path or bytes) are within ``tol`` of a colour (a name of :data:`TAB` or RGB):
    what a figure test asks of a plot instead of its file size."""
    import io

    import numpy as np
    from PIL import Image

    src = io.BytesIO(png) if isinstance(png, (bytes, bytearray)) else png
    with Image.open(src) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    target = np.array(TAB[colour] if isinstance(colour, str) else colour, dtype=np.int16)
    return int((np.abs(rgb - target).max(axis=2) <= tol).sum())
