"""The extra fix-set a CUDA build of brocolli-caffe 9.0.2 needs (applied after the CPU set).

Kept apart from :mod:`caffegen.toolchain.fixes` so that the CPU build's cache key, which hashes
that file, does not move when a CUDA fix changes; GPU keys hash this file too. Same rules: each fix
names the exact text it expects, so a drifting source fails loudly.

What the CUDA build needs beyond the CPU fixes, and where each item is handled:

* ``-DCPU_ONLY`` only for CPU builds, cuBLAS/cuRAND discovery, C++17, the fresh ``caffe.pb.h`` first:
  caffegen's CMakeLists.txt (the tree's own CMake is not used) plus ``cmake/cuda.cmake``;
* CUDA 13 removed fields, a missing definition, layers without ``.cu`` files: the fixes below.
"""
from __future__ import annotations

from .fixes import Fix

# Layers that declare Forward_gpu/Backward_gpu but ship no .cu file; their .cpp defines stubs only
# under CPU_ONLY, so a CUDA build fails to link. Each entry: (.cpp path, class, the text around STUB_GPU).
_NO_CU_LAYERS: tuple[tuple[str, str, str], ...] = (
    ("src/caffe/layers/hardsigmoid_layer.cpp", "HardSigmoidLayer", ""),
    ("src/caffe/layers/hardswish_layer.cpp", "HardSwishLayer", ""),
    ("src/caffe/layers/maxunpool_layer.cpp", "MaxUnPoolLayer", ""),
    ("src/caffe/layers/pixelshuffle_layer.cpp", "PixelShuffleLayer", "    "),
    ("src/caffe/layers/relu6_layer.cpp", "ReLU6Layer", ""),
    ("src/caffe/layers/upsample_layer.cpp", "UpsampleLayer", "    "),
)


def _cpu_fallback(path: str, cls: str, indent: str) -> Fix:
    """GPU entry points that run the layer's CPU code (SyncedMemory moves the data both ways)."""
    old = f"{indent}#ifdef CPU_ONLY\n{indent}STUB_GPU({cls});\n{indent}#endif\n"
    new = (f"{indent}#ifdef CPU_ONLY\n{indent}STUB_GPU({cls});\n{indent}#else\n"
           "template <typename Dtype>\n"
           f"void {cls}<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,\n"
           "    const vector<Blob<Dtype>*>& top) { Forward_cpu(bottom, top); }\n"
           "template <typename Dtype>\n"
           f"void {cls}<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,\n"
           "    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {\n"
           "  Backward_cpu(top, propagate_down, bottom);\n}\n"
           f"{indent}#endif\n")
    return Fix(path, old, new, f"{cls} has no .cu file: its GPU calls run the CPU code")


CUDA_FIXES: tuple[Fix, ...] = (
    Fix("src/caffe/layers/proposal_layer.cu",
        "INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer);",
        "template <typename Dtype>\n"
        "void ProposalLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,\n"
        "    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}\n\n"
        "INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer);",
        "Backward_gpu is declared and instantiated but never defined (Backward_cpu is empty too)"),
    Fix("src/caffe/common.cpp",
        '  LOG(INFO) << "Clock rate:                    " << prop.clockRate;',
        "  int clock_khz = 0, gpu_overlap = 0, exec_timeout = 0;\n"
        "  CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));\n"
        "  CUDA_CHECK(cudaDeviceGetAttribute(&gpu_overlap, cudaDevAttrGpuOverlap, device));\n"
        "  CUDA_CHECK(cudaDeviceGetAttribute(&exec_timeout, cudaDevAttrKernelExecTimeout, device));\n"
        '  LOG(INFO) << "Clock rate:                    " << clock_khz;',
        "CUDA 13 removed cudaDeviceProp::clockRate"),
    Fix("src/caffe/common.cpp", "(prop.deviceOverlap ? ", "(gpu_overlap ? ",
        "CUDA 13 removed cudaDeviceProp::deviceOverlap"),
    Fix("src/caffe/common.cpp", "(prop.kernelExecTimeoutEnabled ? ", "(exec_timeout ? ",
        "CUDA 13 removed cudaDeviceProp::kernelExecTimeoutEnabled"),
    *(_cpu_fallback(*layer) for layer in _NO_CU_LAYERS),
)
