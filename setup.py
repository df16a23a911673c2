"""Builds bldm_fast._C from kernels/ with torch.utils.cpp_extension and ninja.

C++ CPU kernels always; CUDA sources (kernels/cuda/*.cu plus the torch-facing binding) only where
torch has CUDA and a toolkit is found. Environment switches:
  BLDM_FAST_NO_EXT=1     build no native code (the package then runs on the reference backend)
  BLDM_FAST_NO_CUDA=1    build the C++ kernels only, even where torch has CUDA
  BLDM_FAST_CPU_ARCH     the -march of the C++ kernels (default "native": the hot loops are written
                         for the compiler to vectorise, so a source build targets the CPU it runs
                         on; use e.g. "x86-64-v3" for a build that runs on other machines, or
                         "none" for the compiler's default)
  TORCH_CUDA_ARCH_LIST   the CUDA architectures to compile for (torch's own switch)
"""

import glob
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CPU_ARCH = os.environ.get("BLDM_FAST_CPU_ARCH", "native")
# -ffp-contract=off: no fused multiply-add, so every backend rounds the step math identically.
# -fno-trapping-math: lets gcc if-convert the step's selects into vector blends (without it the
# AVX2 build of the step stays scalar, 9x slower); it changes no result, only FP-exception flags.
CXX_FLAGS = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
CXX_FLAGS += [] if CPU_ARCH == "none" else [f"-march={CPU_ARCH}"]
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false"]


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def native_extensions():
    if os.environ.get("BLDM_FAST_NO_EXT") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    sources = _rel([os.path.join(ROOT, "kernels", "ops.cpp")] + glob.glob(os.path.join(ROOT, "kernels", "cpu", "*.cpp")))
    cuda_sources = _rel(glob.glob(os.path.join(ROOT, "kernels", "cuda", "*.cu"))
                        + glob.glob(os.path.join(ROOT, "kernels", "cuda", "*.cpp")))
    with_cuda = (torch.version.cuda is not None and CUDA_HOME is not None and cuda_sources
                 and os.environ.get("BLDM_FAST_NO_CUDA") != "1")
    include_dirs = [os.path.join(ROOT, "kernels", "include"), os.path.join(ROOT, "kernels")]
    kwargs = dict(name="bldm_fast._C", include_dirs=include_dirs, extra_link_args=["-fopenmp"])
    if with_cuda:
        ext = CUDAExtension(sources=sources + cuda_sources, define_macros=[("BLDM_FAST_WITH_CUDA", "1")],
                            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS}, **kwargs)
    else:
        ext = CppExtension(sources=sources, extra_compile_args={"cxx": CXX_FLAGS}, **kwargs)
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


if __name__ == "__main__":  # also under pip: setuptools runs this file as __main__
    ext_modules, cmdclass = native_extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
