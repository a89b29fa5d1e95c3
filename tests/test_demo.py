"""`caffegen demo-data`: a deterministic, GHIM-shaped synthetic image set."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from caffegen.cli import main
from caffegen.data.demo import MANIFEST, class_table, generate
from caffegen.data.lists import scan
from caffegen.errors import InputError


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_demo_data_is_byte_identical_for_the_same_arguments(tmp_path, capsys):
    for name in ("a", "b"):
        code, out, _ = run_cli(["demo-data", str(tmp_path / name), "--classes", "3", "--per-class", "4",
                                "--seed", "5"], capsys)
        assert code == 0 and "12 images, 3 classes x 4" in out
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(a) == 3 * 4 + 1  # + the hidden manifest
    assert a == b
    other = generate(tmp_path / "c", classes=3, per_class=4, seed=6)
    assert tree_bytes(Path(other.out_dir)).keys() - {MANIFEST} == a.keys() - {MANIFEST}
    assert all(tree_bytes(tmp_path / "c")[k] != a[k] for k in a if k != MANIFEST)


def test_demo_data_has_ghims_shape(tmp_path):
    summary = generate(tmp_path / "demo", classes=4, per_class=6, seed=0)
    assert summary.classes == [c.name for c in class_table(4)]
    sizes = set()
    for path in sorted((tmp_path / "demo").rglob("*.jpg")):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.add(im.size)
    assert sizes == {(400, 300), (300, 400)}
    listset = scan(tmp_path / "demo")  # every image opens and decodes; the manifest is not an image
    assert listset.skipped == [] and len(listset.labels) == 4


def test_classes_differ_in_shape_hue_or_texture():
    table = class_table(20)
    assert len({c.name for c in table}) == 20
    assert len({(c.shape, c.hue, c.texture) for c in table}) == 20
    assert len({c.hue for c in table}) == 20


def test_demo_data_reuses_its_own_set_and_never_overwrites_other_files(tmp_path, capsys):
    generate(tmp_path / "demo", classes=2, per_class=2)
    before = tree_bytes(tmp_path / "demo")
    assert generate(tmp_path / "demo", classes=2, per_class=2).reused
    assert tree_bytes(tmp_path / "demo") == before
    with pytest.raises(InputError, match="made with other arguments"):
        generate(tmp_path / "demo", classes=2, per_class=3)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    code, _, err = run_cli(["demo-data", str(tmp_path / "mine")], capsys)
    assert code == 2 and err == f"caffegen: error: {tmp_path / 'mine'} is not empty; pick another folder or remove it first\n"
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
