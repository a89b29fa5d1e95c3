"""``caffegen lists``, ``caffegen demo-data``, ``caffegen prepare``: thin wrappers over :mod:`caffegen.data`."""
from __future__ import annotations

import warnings
from pathlib import Path

import click

from ..layout import LABELS, LIST_TRAIN, LIST_VAL
from ..errors import InputError


def _parse_classes(value: str | None) -> int | list[str] | None:
    if value is None or value == "":
        return None
    if value.strip().isdigit():
        return int(value)
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise InputError(f"--classes: expected a number or comma-separated class names, got {value!r}")
    return names


@click.command("lists")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of each class held out for validation (rounded half up: 20 images -> 18/2).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the split and the shuffle; same input + seed = byte-identical lists.")
@click.option("--classes", "classes", metavar="N|a,b,c", default=None,
              help="Keep the first N classes (sorted by name) or the named ones. Default: all.")
@click.option("--per-class", type=int, default=None,
              help="Cap images per class (a seeded random draw). Default: all.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("lists"), show_default=True,
              help=f"Folder for {LIST_TRAIN}, {LIST_VAL} and {LABELS}.")
@click.option("--augment", "augment", metavar="SPEC", default=None,
              help="Add augmented copies of each TRAIN image to the train list (never to val): "
                   "'rotate=15,shift=0.1,shear=0.1,zoom=0.1,flip,copies=2' (any subset) or a preset: "
                   "none, light, strong.")
def lists(root: Path, val_fraction: float, seed: int, classes: str | None, per_class: int | None,
          out: Path, augment: str | None) -> None:
    """Turn ROOT into shuffled, stratified ImageData list files.

    ROOT is a folder with one sub-folder per class (images may be nested below it; hidden files are
    ignored) or a CSV of `path,label` rows (relative paths are relative to the CSV). Every image is
    opened and decoded with Pillow; unreadable, truncated or non-image files are left out and listed in
    one warning. Lines are `<absolute path> <label>` (Caffe splits at the last space, so spaces and
    non-ASCII in paths are fine); use them with an empty `root_folder`. labels.txt: line i names label i.

    With --augment (seed 002: when data is small), each train image also gets
    augmented copies (Pillow: one random affine about the centre, a random
    flip), deterministic from the image, the parameters and the copy's number,
    and cached in ~/.cache/caffegen/augment/: the same input gives byte-identical
    lists and files. Caffe's own data layer still crops and mirrors.

    \b
    Examples (the seed's 9:1 GHIM-10k split):
      caffegen lists ~/data/GHIM-10k --out lists/
      caffegen lists ~/data/GHIM-10k --out lists/ --augment "rotate=15,shift=0.1,flip,copies=2"
    """
    from ..data.augment import augment_list, parse_augment
    from ..data.lists import SkippedFilesWarning, format_counts, scan, skipped_message, thin_classes, write_lists

    aug = parse_augment(augment, "--augment")  # a bad spec fails before any image is read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFilesWarning)  # reported below, once, on stderr
        listset = scan(root, val_fraction=val_fraction, seed=seed, classes=_parse_classes(classes),
                       per_class=per_class, exclude=[out])
    if listset.skipped:
        click.echo(f"caffegen: warning: {skipped_message(listset.skipped)}", err=True)
    files = write_lists(listset, out)
    click.echo(format_counts(listset))
    for line in thin_classes(listset, val_fraction):
        click.echo(f"caffegen: warning: {line}", err=True)
    if aug is None:
        (out / "augment.json").unlink(missing_ok=True)  # the lists just written are plain again
    else:
        from rich.progress import Progress

        with Progress(transient=True, disable=not click.get_text_stream("stderr").isatty()) as bar:
            task = bar.add_task("[augment] copies", total=None)
            augment_list(files["train"], aug, out, progress=lambda done, total: bar.update(task, completed=done,
                                                                                           total=total))
        n = len(listset.train)
        click.echo(f"augmented: {aug.describe()}: {n} train images + {n * aug.copies} copies in {files['train']} "
                   f"(val untouched; {out / 'augment.json'})")
    click.echo(f"wrote {files['train']}, {files['val']}, {files['labels']}")


@click.command("demo-data")
@click.argument("out_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--classes", type=click.IntRange(1, 20), default=20, show_default=True,
              help="Number of classes (each a distinct shape x hue x texture).")
@click.option("--per-class", type=click.IntRange(1), default=50, show_default=True,
              help="Images per class (50 -> 45/5 with `caffegen lists`; GHIM-10k has 500).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Same seed and options -> byte-identical JPEGs.")
def demo_data(out_dir: Path, classes: int, per_class: int, seed: int) -> None:
    """Generate the deterministic synthetic demo image set into DIR.

    GHIM-10k's shape (one folder per class, JPEG, 400x300 and 300x400 mixed), with classes a small net
    tells apart even at 64 px and real variation inside each class (position, scale, rotation, colour
    jitter, clutter, noise). Re-running with the same options reuses the set; a non-empty DIR holding
    anything else is never overwritten.

    \b
    Example:
      caffegen demo-data data/demo && caffegen lists data/demo --out lists/
    """
    from ..data.demo import generate

    s = generate(out_dir, classes=classes, per_class=per_class, seed=seed)
    how = "reused" if s.reused else f"wrote in {s.seconds:.1f} s"
    click.echo(f"{s.out_dir}: {s.images} images, {len(s.classes)} classes x {s.per_class} ({how})")


@click.command("prepare")
@click.option("--lmdb", "lmdb", is_flag=True,
              help="Build OUT/train_lmdb and OUT/val_lmdb with Caffe's convert_imageset.")
@click.option("--mean", "mean", is_flag=True,
              help="Compute OUT/mean.binaryproto from OUT/train_lmdb with Caffe's compute_image_mean (the file a "
                   "net's transform_param mean_file reads).")
@click.option("--lists", "lists_dir", type=click.Path(path_type=Path), default=Path("lists"),
              show_default=True, help=f"Folder holding {LIST_TRAIN} and {LIST_VAL}.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="Writes OUT/train_lmdb, OUT/val_lmdb and OUT/mean.binaryproto.")
@click.option("--resize", type=click.IntRange(0), default=256, show_default=True,
              help="Resize every image once to RESIZE x RESIZE (the seed's new_height/new_width); 0 keeps sizes.")
@click.option("--val-resize", type=click.IntRange(0), default=None,
              help="Size for the val LMDB. Default: --resize. The seed's val layer uses 224 (= its crop).")
@click.option("--gray", is_flag=True, help="Store grayscale images.")
@click.option("--force", is_flag=True, help="Replace existing LMDBs (only after the new ones are complete).")
def prepare(lmdb: bool, mean: bool, lists_dir: Path, out: Path, resize: int, val_resize: int | None, gray: bool,
            force: bool) -> None:
    """Convert the list files to LMDB (the fast input path for the `Data` layer) and/or compute their mean.

    Images are decoded and resized once, so training no longer decodes JPEGs every epoch (see
    docs/benchmarks/input_pipeline.md for the measured speed-up). The train LMDB is shuffled once;
    crop, mirror and mean stay in the net's transform_param.

    \b
    Examples:
      caffegen prepare --lmdb --resize 256 --lists lists/ --out data/
      caffegen prepare --mean --out data/        # data/mean.binaryproto from data/train_lmdb
    """
    from ..data.prepare import compute_mean, prepare_lmdb

    if not (lmdb or mean):
        raise InputError("prepare: pass --lmdb (build the LMDBs), --mean (their mean image), or both")
    if lmdb:
        dbs = prepare_lmdb(lists_dir, out, resize=resize, val_resize=val_resize, gray=gray, overwrite=force)
        for split, path in dbs.items():
            click.echo(f"{split}: {path}")
    if mean:
        click.echo(f"mean: {compute_mean(out / 'train_lmdb', out / 'mean.binaryproto', overwrite=force)}")
