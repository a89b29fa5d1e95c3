# CUDA-build settings for caffegen's Caffe CMakeLists.txt, read right after its project() call
# (build.py copies this file into the source tree and passes -DCMAKE_PROJECT_Caffe_INCLUDE=<it>) for
# GPU builds only, so the CPU build (and its cache key, which hashes CMakeLists.txt) never sees it.
# The CUDA branch of CMakeLists.txt then does enable_language(CUDA), CMAKE_CUDA_ARCHITECTURES and
# the cuBLAS/cuRAND lookup under CUDA_EXTRA_ROOT.

if(CPU_ONLY)
  return()
endif()

# One shared libcudart for libcaffe, the tools and _caffe.so (CMake's default links cudart_static into
# every CUDA target, beside the CUDA::cudart that CMakeLists.txt links: two runtimes in one process).
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)

# CUDA 13 rejects architectures below sm_75; Caffe's kernels need nothing newer than sm_35, so any
# supported arch works. Fail at configure time, not after ten minutes of compiling.
if(DEFINED CUDA_ARCH)
  foreach(arch ${CUDA_ARCH})
    string(REGEX MATCH "^[0-9]+" arch_num "${arch}")
    if(NOT arch_num OR arch_num LESS 75)
      message(FATAL_ERROR "CUDA_ARCH=${CUDA_ARCH}: CUDA 13 builds sm_75 and newer only (90 for H100/H200)")
    endif()
  endforeach()
endif()

# Quiet nvcc's notice about architectures it plans to deprecate.
set(CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS} -Wno-deprecated-gpu-targets")
