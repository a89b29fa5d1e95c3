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
    tables = base_tables(name, train, val, TuneNet(), classes=classes, val_images=n_val,
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
