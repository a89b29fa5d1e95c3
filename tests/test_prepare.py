"""`caffegen prepare --lmdb`: list files -> LMDBs (Caffe's convert_imageset) that the real Caffe trains on."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from caffegen.cli import main
from caffegen.data.lists import scan, write_lists
from caffegen.data.prepare import convert_command, to_lmdb
from caffegen.errors import CaffegenError
from helpers import make_imageset


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def lmdb_net(train_db: Path, val_db: Path, classes: int) -> str:
    """Data layers over the LMDBs (crop 28 of the 32 px images) -> one conv -> global pool -> fc."""
    def data(phase: str, source: Path, batch: int) -> str:
        return (f'layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: {phase} }}\n'
                f"  transform_param {{ crop_size: 28 mirror: {'true' if phase == 'TRAIN' else 'false'} }}\n"
                f"  data_param {{ source: {json.dumps(str(source))} batch_size: {batch} backend: LMDB }} }}\n")
    return (data("TRAIN", train_db, 6) + data("TEST", val_db, 2) +
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
            '  convolution_param { num_output: 4 kernel_size: 3 stride: 2 weight_filler { type: "xavier" } } }\n'
            'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE global_pooling: true } }\n'
            f'layer {{ name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param {{ num_output: {classes}'
            ' weight_filler { type: "xavier" } } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }\n')


@pytest.fixture
def lists_dir(tmp_path):
    """3 classes x 10 JPEGs of 40x30 (one with a space in its folder) and their lists (27 train / 3 val)."""
    make_imageset(tmp_path / "img s", classes=3, per_class=10, size=(40, 30))
    write_lists(scan(tmp_path / "img s"), tmp_path / "lists")
    return tmp_path / "lists"


@pytest.mark.caffe
def test_prepare_lmdb_builds_databases_that_real_caffe_trains_on(lists_dir, tmp_path, capsys, caffe_install):
    code, out, _ = run_cli(["prepare", "--lmdb", "--resize", "32", "--lists", str(lists_dir),
                            "--out", str(tmp_path / "db")], capsys)
    assert code == 0, out
    for split in ("train", "val"):
        assert (tmp_path / "db" / f"{split}_lmdb" / "data.mdb").is_file()
    assert not list(tmp_path.glob("db/.*partial*"))
    (tmp_path / "net.prototxt").write_text(lmdb_net(tmp_path / "db/train_lmdb", tmp_path / "db/val_lmdb", 3))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 5\ndisplay: 1\ntest_iter: 1\n'
        "test_interval: 5\nsnapshot_after_train: false\nsolver_mode: CPU\n")
    proc = subprocess.run([str(caffe_install.binary), "train", "--solver=solver.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True, env=caffe_install.env(threads=1), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "output data size: 6,3,28,28" in proc.stderr  # the Data layer read 32 px images, cropped 28
    assert "Optimization Done" in proc.stderr

    # a second run keeps the finished LMDBs unless --force
    code, _, err = run_cli(["prepare", "--lmdb", "--resize", "32", "--lists", str(lists_dir),
                            "--out", str(tmp_path / "db")], capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1


@pytest.mark.caffe
def test_missing_image_fails_with_one_line_naming_it(lists_dir, tmp_path):
    listed = (lists_dir / "list_val_shuffle.txt").read_text()
    (tmp_path / "bad.txt").write_text(listed + f"{tmp_path / 'gone.jpg'} 1\n")
    with pytest.raises(CaffegenError, match=r"converted 3 of 4 images .* first: .*gone\.jpg") as exc:
        to_lmdb(tmp_path / "bad.txt", tmp_path / "bad_lmdb", resize=32)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "bad_lmdb").exists()


def test_convert_command_uses_caffes_flags():
    argv = convert_command("/x/convert_imageset", "l.txt", "db", resize=256)
    assert argv == ["/x/convert_imageset", "--resize_height=256", "--resize_width=256", "--shuffle=true",
                    "--gray=false", "--backend=lmdb", "", "l.txt", "db"]
