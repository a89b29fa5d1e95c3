"""`caffegen lists`: an image folder becomes stratified, shuffled list files that the real Caffe trains on."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from caffegen.cli import main
from caffegen.layout import LIST_TRAIN, LIST_VAL
from caffegen.data.lists import SkippedFilesWarning, n_val_for, read_list, scan, write_lists
from caffegen.errors import InputError
from helpers import make_imageset


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the real entry point (exit codes included) and capture what it printed."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def tiny_net(train: Path, val: Path, classes: int, *, root_folder: str = "") -> str:
    """ImageData at 32 px -> one conv -> global pool -> fc: just enough for Caffe to read every image."""
    def data(phase: str, source: Path, batch: int) -> str:
        return (f'layer {{ name: "data" type: "ImageData" top: "data" top: "label" include {{ phase: {phase} }}\n'
                f"  transform_param {{ crop_size: 28 mirror: {'true' if phase == 'TRAIN' else 'false'} }}\n"
                f"  image_data_param {{ source: {q(str(source))} root_folder: {q(root_folder)} batch_size: {batch}"
                f" new_height: 32 new_width: 32 shuffle: {'true' if phase == 'TRAIN' else 'false'} }} }}\n")
    return (data("TRAIN", train, 6) + data("TEST", val, 2) +
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
            '  convolution_param { num_output: 4 kernel_size: 3 stride: 2 weight_filler { type: "xavier" } } }\n'
            'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE global_pooling: true } }\n'
            f'layer {{ name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param {{ num_output: {classes}'
            ' weight_filler { type: "xavier" } } }\n'
            'layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }\n')


def caffe_train(inst, workdir: Path, net: str, *, iters: int = 5, test_iter: int = 3) -> str:
    """Run the real `caffe train` on ``net``; assert success and return its log."""
    (workdir / "net.prototxt").write_text(net, encoding="utf-8")
    (workdir / "solver.prototxt").write_text(
        f'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: {iters}\ndisplay: 1\n'
        f"test_iter: {test_iter}\ntest_interval: {iters}\nsnapshot_after_train: false\nsolver_mode: CPU\n")
    proc = subprocess.run([str(inst.binary), "train", "--solver=solver.prototxt"], cwd=workdir,
                          capture_output=True, text=True, errors="replace", env=inst.env(threads=1), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Optimization Done" in proc.stderr
    return proc.stderr


@pytest.fixture
def folder_with_bad_files(tmp_path):
    """3 classes x 20 good JPEGs, plus a truncated JPEG in class_1 and a text file in class_2."""
    root = tmp_path / "images"
    make_imageset(root, classes=3, per_class=20, size=(40, 30))
    good = (root / "class_0" / "img_000.jpg").read_bytes()
    (root / "class_1" / "broken.jpg").write_bytes(good[: len(good) // 2])
    (root / "class_2" / "notes.txt").write_text("not an image\n")
    return root


@pytest.mark.caffe
def test_lists_split_warns_and_trains_in_real_caffe(folder_with_bad_files, tmp_path, capsys, caffe_install):
    out = tmp_path / "lists"
    code, stdout, stderr = run_cli(["lists", str(folder_with_bad_files), "--out", str(out)], capsys)
    assert code == 0
    # exactly the two bad files are reported, once each, with a reason (in one warning; the others: thin classes)
    assert stderr.count("caffegen: warning: left out") == 1 and stderr.count("left out") == 1
    assert "left out 2 files" in stderr
    assert stderr.count("caffegen: warning: class ") == 3 and "only 2 val images" in stderr   # 2 of 20: thin
    assert "broken.jpg: truncated" in stderr and "notes.txt: not an image" in stderr
    # 9:1 per class -> 18/2, and the table says so
    train, val = read_list(out / LIST_TRAIN), read_list(out / LIST_VAL)
    for label in range(3):
        assert sum(1 for _, lb in train if lb == label) == 18
        assert sum(1 for _, lb in val if lb == label) == 2
    assert (out / "labels.txt").read_text() == "class_0\nclass_1\nclass_2\n"
    assert "total        54      6        2" in stdout
    assert all(Path(p).is_absolute() for p, _ in train + val)
    assert not {p for p, _ in train} & {p for p, _ in val}
    log = caffe_train(caffe_install, tmp_path, tiny_net(out / LIST_TRAIN, out / LIST_VAL, 3))
    assert "A total of 54 images." in log and "A total of 6 images." in log


def test_lists_byte_identical_when_run_twice(folder_with_bad_files, tmp_path, capsys):
    outs = []
    for n in range(2):
        out = tmp_path / f"lists{n}"
        assert run_cli(["lists", str(folder_with_bad_files), "--out", str(out), "--seed", "7"], capsys)[0] == 0
        outs.append({f.name: f.read_bytes() for f in sorted(out.iterdir())})
    assert outs[0] == outs[1]
    assert set(outs[0]) == {"list_train_shuffle.txt", "list_val_shuffle.txt", "labels.txt"}
    # another seed draws another split and shuffle of the same images
    with pytest.warns(SkippedFilesWarning):
        other = scan(folder_with_bad_files, seed=8)
    seven = read_list(tmp_path / "lists0" / LIST_TRAIN) + read_list(tmp_path / "lists0" / LIST_VAL)
    assert sorted(other.train + other.val) == sorted(seven)
    assert other.train != seven[: len(other.train)]


@pytest.mark.caffe
def test_paths_with_spaces_and_non_ascii_train_in_real_caffe(tmp_path, caffe_install):
    root = tmp_path / "my photos" / "données été"
    make_imageset(root, classes=2, per_class=6, size=(40, 30))
    (root / "class_0").rename(root / "chat noir ñ")
    (root / "class_1").rename(root / "日本 の 犬")
    for i, p in enumerate(sorted((root / "chat noir ñ").glob("*.jpg"))):
        p.rename(p.with_name(f"photo {i} café.jpg"))
    listset = scan(root)
    assert listset.labels == ["chat noir ñ", "日本 の 犬"]
    files = write_lists(listset, tmp_path / "lists")
    assert "photo 0 café.jpg" in files["train"].read_text(encoding="utf-8") + files["val"].read_text(encoding="utf-8")
    log = caffe_train(caffe_install, tmp_path, tiny_net(files["train"], files["val"], 2), test_iter=2)
    assert "A total of 10 images." in log and "A total of 2 images." in log


def test_empty_class_is_one_line_exit_2(tmp_path, capsys):
    root = tmp_path / "images"
    make_imageset(root, classes=2, per_class=3)
    (root / "empty").mkdir()
    code, stdout, stderr = run_cli(["lists", str(root), "--out", str(tmp_path / "l")], capsys)
    assert code == 2
    assert stderr == "caffegen: error: class 'empty' is empty\n"
    assert not (tmp_path / "l").exists()


def test_no_images_at_all_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    code, _, stderr = run_cli(["lists", str(tmp_path / "nothing")], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "no class folders found" in stderr
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "readme.txt").write_text("hello")
    code, _, stderr = run_cli(["lists", str(tmp_path / "junk")], capsys)
    assert code == 2
    assert stderr.splitlines()[-1] == "caffegen: error: class 'a' has no usable image (1 files, all left out)"


def test_classes_and_per_class_shrink_the_problem(tmp_path):
    root = tmp_path / "images"
    make_imageset(root, classes=4, per_class=10)
    first_two = scan(root, classes=2, per_class=5)
    assert first_two.labels == ["class_0", "class_1"]
    assert {n: (c.train, c.val) for n, c in first_two.counts.items()} == {"class_0": (4, 1), "class_1": (4, 1)}
    named = scan(root, classes=["class_3", "class_1"])
    assert named.labels == ["class_1", "class_3"]  # label order is always sorted order
    with pytest.raises(InputError, match="unknown class 'nope'"):
        scan(root, classes=["nope"])


def test_csv_of_path_label(tmp_path):
    items = make_imageset(tmp_path / "imgs", classes=2, per_class=10)
    rows = ["path,label"] + [f"{p.relative_to(tmp_path)},{'cat' if lb else 'dog'}" for p, lb in items]
    rows.append("imgs/missing.jpg,cat")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(SkippedFilesWarning, match="missing.jpg: no such file"):
        listset = scan(tmp_path / "data.csv")
    assert listset.labels == ["cat", "dog"]
    assert len(listset.train) == 18 and len(listset.val) == 2
    assert all(Path(p).is_absolute() and Path(p).exists() for p, _ in listset.train)


@pytest.mark.parametrize("n, fraction, expected", [(20, 0.1, 2), (500, 0.1, 50), (15, 0.1, 2), (14, 0.1, 1),
                                                   (3, 0.1, 1), (1, 0.1, 0), (10, 0.0, 0), (2, 0.9, 1)])
def test_val_count_rounds_half_up_and_keeps_a_train_image(n, fraction, expected):
    assert n_val_for(n, fraction) == expected
