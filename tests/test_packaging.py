"""A wheel of caffegen works outside the checkout: templates, specs, CMake files and the scanner source ship in it."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel .`` with the set-up environment's own setuptools (no download, no build isolation)."""
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(dist)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = dist.glob("caffegen-*.whl")
    return built


def test_the_wheel_carries_every_data_file_the_package_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").glob("*.j2"):
        assert f"caffegen/templates/{template.name}" in names
    for spec in (ROOT / "caffegen" / "specs").glob("*.toml"):
        assert f"caffegen/specs/{spec.name}" in names
    assert {"caffegen/toolchain/cmake/CMakeLists.txt", "caffegen/toolchain/cmake/cuda.cmake",
            "caffegen/logs/native/logscan.c", "caffegen/run/launcher.c"} <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "docs/"))]


@pytest.mark.caffe
def test_a_non_editable_install_renders_and_writes_solvers_from_an_empty_folder(wheel, tmp_path):
    """Installed into a fresh venv (dependencies seen from the set-up environment's site-packages, caffegen itself
    only from the wheel), run from a folder outside the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=300).stdout.strip())
    # a plain path line: the set-up env's packages become importable, but its .pth hooks (the editable caffegen
    # finder among them) are not run
    (site / "setup_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # nothing but the venv decides what imports
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "empty"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import caffegen; print(caffegen.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True, timeout=300).stdout.strip()
    assert Path(where).is_relative_to(site), where  # the wheel's copy, not the checkout
    caffegen = venv / "bin" / "caffegen"
    render = subprocess.run([str(caffegen), "render", "--lr", "0.01"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=300)
    assert render.returncode == 0, render.stderr
    assert sorted(p.name for p in work.iterdir()) == ["deploy.prototxt", "solver.prototxt", "train_val.prototxt"]
    assert "base_lr: 0.01" in (work / "solver.prototxt").read_text()
    solvers = subprocess.run([str(caffegen), "solvers", "--lr", "0.1,0.01", "--policy", "all"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
    assert solvers.returncode == 0, solvers.stderr
    assert len(list((work / "solvers").glob("lr*.prototxt"))) == 14 and (work / "solvers" / "index.csv").exists()
    dry = subprocess.run([str(caffegen), "sweep", "default", "--dry-run"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0 and "21 variants" in dry.stdout, dry.stderr
