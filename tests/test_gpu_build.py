"""The CUDA variant of the Caffe build, checked without a GPU, nvcc or a CUDA build (CI has none).

What can be proven here: the CUDA cache entry never disturbs the CPU one, the CUDA fix-set still
matches the pinned source and leaves no GPU entry point undefined, and CMake gets the CUDA settings.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from caffegen.toolchain import build as B
from caffegen.toolchain import fixes as F
from caffegen.toolchain import fixes_cuda as FC


def _source_tree(tmp_path: Path) -> Path:
    archive = B.fetch_source(B.cache_root(), log=lambda _: None)  # the verified sdist (downloaded once)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/src/caffe/" in m.name or "/include/caffe/" in m.name]
        tar.extractall(tmp_path, members=members, filter="data")
    (top,) = list(tmp_path.iterdir())
    return top


def test_cuda_build_gets_its_own_cache_entry():
    cpu, gpu = B.build_key(B.BuildFlags()), B.build_key(B.BuildFlags(gpu=True))
    assert cpu.startswith("9.0.2-cpu-") and gpu.startswith("9.0.2-cuda-")
    assert B.entry_for(B.BuildFlags()).root != B.entry_for(B.BuildFlags(gpu=True)).root
    assert B.build_key(B.BuildFlags(gpu=True, cuda_arch="80")) != gpu


def test_cuda_only_inputs_never_move_the_cpu_key(tmp_path):
    """Editing the CUDA fix-set, cuda.cmake or the cuBLAS pin rebuilds CUDA only, never the CPU build."""
    cpu, gpu = B.build_key(B.BuildFlags()), B.build_key(B.BuildFlags(gpu=True))
    edited = tmp_path / "cuda.cmake"
    edited.write_text(B.CUDA_CMAKE_FILE.read_text() + "\n# edited\n")
    assert B.build_key(B.BuildFlags(), cuda_cmake=edited) == cpu
    assert B.build_key(B.BuildFlags(gpu=True), cuda_cmake=edited) != gpu
    other_pin = ("nvidia-cublas==13.0.0.19", "nvidia-curand==10.4.0.35")
    assert B.build_key(B.BuildFlags(), cuda_wheels=other_pin) == cpu
    assert B.build_key(B.BuildFlags(gpu=True), cuda_wheels=other_pin) != gpu


def test_cmake_arguments_for_cpu_and_cuda():
    cpu = B.BuildFlags().cmake_args()
    assert "-DCPU_ONLY=ON" in cpu
    assert not [a for a in cpu if "CUDA" in a]
    gpu = B.BuildFlags(gpu=True, cuda_arch="90").cmake_args()
    assert "-DCPU_ONLY=OFF" in gpu and "-DCUDA_ARCH=90" in gpu
    assert "-DCMAKE_PROJECT_Caffe_INCLUDE=<source>/caffegen_cuda.cmake" in gpu
    assert "-DCUDA_EXTRA_ROOT=<cuda-libs>" in gpu


def test_cuda_arch_comes_from_the_environment_or_defaults_to_sm90(monkeypatch, tmp_path):
    monkeypatch.setenv("CAFFE_CUDA_ARCH", "80")
    assert B.gpu_arch() == "80"
    monkeypatch.delenv("CAFFE_CUDA_ARCH")
    monkeypatch.setenv("PATH", str(tmp_path))   # no nvidia-smi on the PATH: a GPU-less build machine
    assert B.gpu_arch() == "90"


def test_cuda_fix_set_matches_the_pinned_source_and_defines_every_gpu_entry_point(tmp_path):
    """Every layer that declares Forward_gpu gets a definition: a .cu file or the CPU fallback."""
    top = _source_tree(tmp_path)
    done = F.apply(top, FC.CUDA_FIXES, remove=())
    assert len(done) == len(FC.CUDA_FIXES)
    layers = top / "src/caffe/layers"
    undefined = []
    for cpp in sorted(layers.glob("*.cpp")):
        stub = re.search(r"^\s*STUB_GPU\((\w+)\)", cpp.read_text(), re.MULTILINE)  # not the //-commented ones
        if not stub or cpp.with_suffix(".cu").exists():
            continue
        if f"void {stub.group(1)}<Dtype>::Forward_gpu" not in cpp.read_text():
            undefined.append(cpp.name)
    assert undefined == []
    common = (top / "src/caffe/common.cpp").read_text()
    for removed in ("clockRate", "deviceOverlap", "kernelExecTimeoutEnabled"):  # gone from CUDA 13's cudaDeviceProp
        assert f"prop.{removed}" not in common
    assert "ProposalLayer<Dtype>::Backward_gpu" in (layers / "proposal_layer.cu").read_text()


def test_gpu_source_tree_carries_cuda_cmake_and_cpu_tree_does_not(tmp_path):
    archive = B.fetch_source(B.cache_root(), log=lambda _: None)  # the verified sdist (downloaded once)
    gpu_done = B.prepare_source(archive, tmp_path / "gpu", B.BuildFlags(gpu=True))
    assert (tmp_path / "gpu" / "caffegen_cuda.cmake").read_text() == B.CUDA_CMAKE_FILE.read_text()
    assert len(gpu_done) == len(F.CPU_FIXES) + len(FC.CUDA_FIXES) + len(F.REMOVE)
    cpu_done = B.prepare_source(archive, tmp_path / "cpu", B.BuildFlags())
    assert not (tmp_path / "cpu" / "caffegen_cuda.cmake").exists()
    assert len(cpu_done) == len(F.CPU_FIXES) + len(F.REMOVE)
    assert "Forward_cpu(bottom, top); }" not in (tmp_path / "cpu/src/caffe/layers/relu6_layer.cpp").read_text()


@pytest.mark.parametrize("arch, ok", [("90", True), ("75;90", True), ("52", False), ("60;90", False)])
def test_cuda_cmake_rejects_architectures_cuda13_dropped(arch, ok, tmp_path):
    """cuda.cmake stops at configure time on sm < 75 (CUDA 13 cannot build them), no nvcc needed."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is installed by `make setup`"
    proc = subprocess.run([cmake, "-DCPU_ONLY=OFF", f"-DCUDA_ARCH={arch}", "-P", str(B.CUDA_CMAKE_FILE)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert (proc.returncode == 0) is ok, proc.stderr
    if not ok:
        assert "sm_75 and newer" in proc.stderr
