"""The lean bundle that travels to a GPU host (`make gpu-bundle`), and the device script it runs.

CI has no GPU, so the bundle checked here is the lean CPU variant: the same build flags but CUDA, the same
bundler. What it proves: the folder stays under what one device call carries, it is relocatable ($ORIGIN
RUNPATHs), the loader resolves every library inside it or to glibc, and bench/gpu/run.sh runs end to end on it
(SMOKE=1: tiny sizes, CPU)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from caffegen.toolchain import build as B
from caffegen.toolchain.bundle import CUDA_LIBS, HOST_LIBS, LIMIT, ldd, make_bundle

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.bundle, pytest.mark.caffe]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    entry = B.build(B.BuildFlags(**B.LEAN), log=lambda _: None)   # cached after the first time (a few minutes)
    return make_bundle(entry, tmp_path_factory.mktemp("bundle") / "caffe-bundle", log=lambda _: None)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}


def test_the_lean_bundle_is_small_relocatable_and_self_contained(bundle, tmp_path):
    assert bundle.size < LIMIT
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(bundle.root, moved, symlinks=True)
    for name, path in ldd(moved / "bin" / "caffe", env=clean_env()).items():
        if CUDA_LIBS.match(name):
            continue
        assert path is not None, f"{name} not found"
        assert Path(path).resolve().is_relative_to(moved.resolve() / "lib") or HOST_LIBS.match(name), (name, path)
    dyn = subprocess.run(["readelf", "-d", moved / "bin" / "caffe"], capture_output=True, text=True, timeout=300).stdout
    assert "(RUNPATH)" in dyn and "[$ORIGIN/../lib]" in dyn
    names = {p.name for p in (moved / "lib").iterdir()}
    assert any(n.startswith("libcaffe") for n in names)
    assert not any(n.startswith(("libopencv", "libopenblas", "libpython")) for n in names)   # the lean variant
    info = json.loads((moved / "bundle.json").read_text())
    assert info["bytes"] == bundle.size and info["flags"]["opencv"] is False and info["from_host"]["glibc"]
    proc = subprocess.run([moved / "bin" / "caffe", "--version"], capture_output=True, text=True, env=clean_env(), timeout=300)
    assert proc.returncode == 0 and "caffe version" in (proc.stdout + proc.stderr).lower()


def test_the_device_script_runs_end_to_end_on_the_bundle(bundle, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", ROOT / "bench" / "gpu" / "run.sh", bundle.root], cwd=tmp_path,
                          env={**clean_env(), "SMOKE": "1", "OUT": str(out)}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] in ("CPU", "GPU")
    assert all(s["exit"] == 0 for s in res["steps"].values()), res["steps"]
    assert set(res["time"]) == {"2", "4"} and all(t["img_per_s"] > 0 for t in res["time"].values())
    assert set(res["packing"]) == {"1", "2"} and res["train"]["iterations"] == 4
    assert "Optimization Done" in (out / "logs" / "train.log").read_text()
    host = res["host"]                   # what a failing GPU run is read from first
    glibc = subprocess.run(["ldd", "--version"], capture_output=True, text=True, timeout=300).stdout.splitlines()[0]
    assert glibc.endswith(host["glibc"]) and host["glibc_needed"].startswith(">= ")
    assert host["missing"] == []         # the lean CPU bundle needs nothing the host lacks
