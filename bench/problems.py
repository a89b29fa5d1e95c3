"""The benchmarks' two problems and the grid they are judged against, defined once (bench/search, bench/tune and
bench/schedules import this file).

* ``default``: the default spec's 20-class demo set (80 train / 20 val images per class: 400 val images);
* ``digits``: scikit-learn's 1,797 8x8 digits (10 classes) as 32x32 PNGs.

The **repeated grid** trains the net ``caffegen tune`` trains without a NET (the seed's net at resize 44 / crop 40
with BatchNorm) for 6 epochs on the lists ``caffegen tune`` makes (8:2, seed 0): base_lr 0.1 / 0.01 / 0.001 x a set
of schedules x random_seed 0, 1, 2. Two sweeps of it, same data, net, solver and seeds: ``<kind>_grid`` over Caffe's
seven (63 runs: what bench/tune compares the tuner with; its compute is measured, so it runs on a quiet machine) and
``<kind>_chains`` over the chained schedules (54 runs: bench/schedules puts them beside the seven; only their scores
are used). Each sweep resumes when rerun.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from caffegen.sweep.store import read_sweep  # noqa: E402

KINDS = ("default", "digits")


def digits_folder(dst: Path) -> Path:
    """scikit-learn's digits as 32x32 PNGs, one folder per class (made once)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("the digits set ships inside scikit-learn: .venv/bin/pip install -e '.[bench]'")
    from PIL import Image

    if dst.exists():
        return dst
    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        folder = dst / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        px = (img * (255 / 16)).clip(0, 255).astype("uint8")
        Image.fromarray(px, "L").convert("RGB").resize((32, 32), Image.NEAREST).save(folder / f"{i:04d}.png")
    return dst


def demo_folder(dst: Path) -> Path:
    """The default spec's demo set: 20 classes x 100 images (made once)."""
    if not dst.exists():
        subprocess.run([sys.executable, "-m", "caffegen", "demo-data", str(dst), "--classes", "20",
                        "--per-class", "100"], check=True, capture_output=True)
    return dst


def folder_of(kind: str, work: Path) -> Path:
    return demo_folder(work / "demo20") if kind == "default" else digits_folder(work / "digits")


def lists(folder: Path, work: Path) -> tuple[Path, Path, int, int, int]:
    """The lists `caffegen tune` makes of a folder (8:2, seed 0), made once: (train, val, classes, n_val, n_train)."""
    from caffegen.data.sources import DataSpec, prepare_data

    data = prepare_data(DataSpec(root=str(folder), val_fraction=0.2), work, lambda _: None)
    n_val = sum(1 for _ in open(data.val_list))
    n_train = sum(1 for _ in open(data.train_list))
    return data.train_list, data.val_list, data.num_classes, n_val, n_train


def epochs_iters(n_train: int, epochs: int = 6, batch: int = 16) -> int:
    return 10 * round(epochs * n_train / batch / 10)


def repeated_grid(kind: str, work: Path, chains: bool = False) -> Path:
    """Run (or resume) the repeated grid of ``kind`` over Caffe's seven policies (or the chained schedules); its
    sweep folder."""
    import tomli_w

    from caffegen.prototxt.chains import CHAINED
    from caffegen.tune.specs import TuneNet, base_tables

    train, val, classes, n_val, n_train = lists(folder_of(kind, work), work / f"data-{kind}")
    name = f"{kind}_{'chains' if chains else 'grid'}"
    tables = base_tables(name, {"train_list": str(train), "val_list": str(val)}, TuneNet(), classes=classes, val_images=n_val,
                         iters=epochs_iters(n_train), passes=12, run={"backend": "local"})
    tables["grid"] = {"base_lr": [0.1, 0.01, 0.001], "lr_policy": list(CHAINED) if chains else "all", "repeats": 3}
    spec = work / f"{name}.toml"
    spec.write_text(tomli_w.dumps(tables))
    out = work / "runs" / name
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "caffegen", "sweep", str(spec), "--out", str(out)], cwd=work,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"{name}: {len(read_sweep(out)[0])} runs, {time.time() - t0:.0f} s this time",
          flush=True)
    return out


# -- the tables' problems (bench/tables): each a train list and a val list of small images, made once, offline ------

TABLE_PROBLEMS = ("digits", "textures", "demo")     # recorded in this order: the cheapest first


def _write_list(path: Path, items: list[tuple[Path, int]]) -> None:
    path.write_text("".join(f"{p} {label}\n" for p, label in items), encoding="utf-8")


def _shrunk_demo(dst: Path) -> tuple[list, list]:
    """The demo set (20 classes x 100) at 48x48 (ImageData decodes each image per iteration: a 400x300 JPEG costs
    more than the net), half of each class for val: 1,000 train / 1,000 val images, so one test pass is not noise."""
    from PIL import Image

    src = demo_folder(dst.parent / "demo20")
    train, val = [], []
    for label, cls in enumerate(sorted(p for p in src.iterdir() if p.is_dir())):
        files = sorted(cls.glob("*.jpg"))
        for i, f in enumerate(files):
            out = dst / cls.name / f"{f.stem}.png"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.open(f).convert("RGB").resize((48, 48), Image.BILINEAR).save(out)
            (train if i % 2 == 0 else val).append((out, label))
    return train, val


def _digits(dst: Path) -> tuple[list, list]:
    """scikit-learn's digits (1,797, 10 classes) as 32x32 PNGs, split 8:2 per class (the tune's own split)."""
    folder = digits_folder(dst.parent / "digits")
    train, val = [], []
    for label, cls in enumerate(sorted(p for p in folder.iterdir() if p.is_dir())):
        files = sorted(cls.glob("*.png"))
        for i, f in enumerate(files):
            (val if i % 5 == 4 else train).append((f, label))
    return train, val


TEXTURE_PHOTOS = ("brick", "grass", "gravel", "moon", "camera", "coins", "coffee", "chelsea", "astronaut", "rocket")


def _textures(dst: Path, train_per: int = 150, val_per: int = 100) -> tuple[list, list]:
    """Real photographs (scikit-image's bundled samples, offline): 10 classes, one per photo, of grey 48x48 patches
    cut at a random size (24-64 px) and position, flipped and jittered in brightness and contrast. Train patches come
    from the top 70% of each photo, val patches from the bottom 30%: no pixel is in both. 1,500 train / 1,000 val."""
    import numpy as np
    from PIL import Image
    try:
        import skimage.data
    except ImportError:
        sys.exit("the texture photos ship inside scikit-image: .venv/bin/pip install -e '.[bench]'")

    train, val = [], []
    for label, name in enumerate(TEXTURE_PHOTOS):
        img = np.asarray(getattr(skimage.data, name)())
        gray = img if img.ndim == 2 else (img[..., :3] @ [0.299, 0.587, 0.114])
        gray = gray.astype(np.float32)
        h = gray.shape[0]
        rng = np.random.default_rng([1234, label])
        for part, rows, n, items in (("train", (0, int(0.7 * h)), train_per, train),
                                     ("val", (int(0.7 * h), h), val_per, val)):
            region = gray[rows[0]:rows[1]]
            for i in range(n):
                out = dst / part / f"{label:02d}_{name}" / f"{i:04d}.png"
                if not out.exists():
                    size = int(rng.integers(24, min(65, region.shape[0], region.shape[1])))
                    y = int(rng.integers(0, region.shape[0] - size + 1))
                    x = int(rng.integers(0, region.shape[1] - size + 1))
                    patch = region[y:y + size, x:x + size]
                    if rng.random() < 0.5:
                        patch = patch[:, ::-1]
                    patch = (patch - patch.mean()) * rng.uniform(0.7, 1.3) + patch.mean() + rng.uniform(-25, 25)
                    px = Image.fromarray(patch.clip(0, 255).astype(np.uint8)).resize((48, 48), Image.BILINEAR)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    px.convert("RGB").save(out)
                items.append((out, label))
    return train, val


_MAKERS = {"digits": _digits, "textures": _textures, "demo": _shrunk_demo}


def problem_lists(name: str, work: Path) -> tuple[Path, Path, int, int, int]:
    """A table problem's images and lists under ``work/problem-<name>/``, made once: (train list, val list,
    classes, val images, train images)."""
    if name not in _MAKERS:
        raise KeyError(name)
    dst = work / f"problem-{name}"
    train_list, val_list = dst / "train.txt", dst / "val.txt"
    if not (train_list.exists() and val_list.exists()):
        train, val = _MAKERS[name](dst / "images")
        dst.mkdir(parents=True, exist_ok=True)
        _write_list(train_list, train)
        _write_list(val_list, val)
    labels = {int(ln.rsplit(" ", 1)[1]) for ln in train_list.read_text().splitlines() if ln.strip()}
    n_train = sum(1 for ln in train_list.read_text().splitlines() if ln.strip())
    n_val = sum(1 for ln in val_list.read_text().splitlines() if ln.strip())
    return train_list, val_list, len(labels), n_val, n_train
