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


# A net in the style of Caffe's MNIST LeNet (the source package ships no examples/): LMDB Data layers, no crop.
LENET_STYLE = """name: "LeNet-style"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 } data_param { source: "lmdb/train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 } data_param { source: "lmdb/val_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 5 stride: 1 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 20 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

# A Model-Zoo-sized net with a global-pool head (conv classifier, global average pool): any crop works.
ZOO_SIZED = """name: "zoo-sized global-pool net"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 227 mirror: true mean_value: 104 mean_value: 117 mean_value: 123 }
  image_data_param { source: "train.txt" batch_size: 8 shuffle: true new_height: 256 new_width: 256 } }
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 227 mean_value: 104 mean_value: 117 mean_value: 123 }
  image_data_param { source: "val.txt" batch_size: 8 new_height: 256 new_width: 256 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 32 kernel_size: 11 stride: 4 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 64 kernel_size: 5 pad: 2 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 64 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "cls" type: "Convolution" bottom: "pool3" top: "cls"
  convolution_param { num_output: 1000 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "gap" type: "Pooling" bottom: "cls" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "gap" bottom: "label" top: "loss" }
"""

# A net in the style of Caffe's CIFAR-10 quick: LMDB Data layers, a mean file, no crop, a fixed-size head.
CIFAR_QUICK_STYLE = """name: "CIFAR10_quick-style"
layer { name: "cifar" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mean_file: "examples/cifar10/mean.binaryproto" }
  data_param { source: "examples/cifar10/cifar10_train_lmdb" batch_size: 8 backend: LMDB } }
layer { name: "cifar" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { mean_file: "examples/cifar10/mean.binaryproto" }
  data_param { source: "examples/cifar10/cifar10_test_lmdb" batch_size: 8 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 pad: 2 kernel_size: 5 stride: 1 weight_filler { type: "gaussian" std: 0.0001 } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "pool1" top: "pool1" }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 8 pad: 2 kernel_size: 5 stride: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


# A page read in a real browser: headless Chromium (Debian's package) loads it in a frame of a probe page that
# reports each image's decoded size and whether each relative link's target can be fetched.
BROWSER_PROBE = """<!doctype html><html><body><iframe id="f" src="{page}" style="width:1200px;height:900px"></iframe>
<script>
document.getElementById("f").onload = async () => {{
  const doc = document.getElementById("f").contentDocument;
  const imgs = [...doc.images].map(i => ({{src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0}}));
  const links = [];
  for (const a of doc.querySelectorAll("a[href]")) {{
    const href = a.getAttribute("href");
    if (/^[a-z]+:/.test(href)) continue;
    let ok = false;
    try {{ ok = (await fetch(a.href)).ok; }} catch (e) {{ ok = false; }}
    links.push({{href, ok}});
  }}
  document.body.setAttribute("data-result", JSON.stringify({{imgs, links}}));
}};
</script></body></html>"""


def browser_check(page: Path, tmp: Path) -> dict:
    """What headless Chromium saw of ``page``: {"imgs": [{src, ok}], "links": [{href, ok}]}."""
    import json
    import re
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed (make test installs Debian's chromium)"
    probe = tmp / "probe.html"
    probe.write_text(BROWSER_PROBE.format(page=page.resolve().as_uri()))
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", f"--user-data-dir={tmp / 'chromium'}", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-result="([^"]*)"', proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
