"""Builds bldm_fast._C from kernels/ with torch.utils.cpp_extension and ninja.

C++ CPU kernels always; CUDA sources (kernels/cuda/*.cu plus the torch-facing binding) only where
torch has CUDA and a toolkit is found. Environment switches:
  BLDM_FAST_NO_EXT=1     build no native code (the package then runs on the reference backend)
  BLDM_FAST_NO_CUDA=1    build the C++ kernels only, even where torch has CUDA
  BLDM_FAST_CPU_ARCH     unset (default): one portable binary with runtime CPU dispatch: the hot
                         loops (kernels/cpu/isa/) are compiled for AVX-512, AVX2 and baseline x86-64
                         and the first call picks the best path the CPU runs (kernels/cpu/dispatch.cpp;
                         BLDM_FAST_CPU_CAPABILITY=avx2|default forces a lower one at run time).
                         Set it to build one path with -march=VALUE instead (e.g. "native" for a
                         binary only for this CPU, or "x86-64-v3"); the path is then called "default"
  BLDM_FAST_DEBUG=1      keep debug information (-g) and do not strip the extension (release
                         builds link with -s: 300 KB instead of 12.5 MB)
  TORCH_CUDA_ARCH_LIST   the CUDA architectures to compile for (torch's own switch)

The extension uses torch's C++ symbols, so it runs only with the torch it was built against: the
wheel requires that torch's major.minor (`torch>=X.Y,<X.(Y+1)`), and the build writes
bldm_fast/_C_build.json (torch version, CUDA, -march or "dispatch") beside the extension, which
bldm_fast/_native.py checks at import. A build without native code (BLDM_FAST_NO_EXT=1) requires any torch >= 2.6.
"""

import glob
import json
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CPU_ARCH = os.environ.get("BLDM_FAST_CPU_ARCH", "")  # "": the dispatching build
DEBUG = os.environ.get("BLDM_FAST_DEBUG") == "1"
BUILD_INFO_FILE = "_C_build.json"
REQUIRES = ["numpy>=1.26", "tqdm>=4.66", "Pillow>=10", "scikit-learn>=1.3"]
TORCH_WITHOUT_EXT = "torch>=2.6"
# -ffp-contract=off: no fused multiply-add, so every backend rounds the step math identically.
# -fno-trapping-math: lets gcc if-convert the step's selects into vector blends (without it the
# AVX2 build of the step stays scalar, 9x slower); it changes no result, only FP-exception flags.
CXX_FLAGS = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
CXX_FLAGS += [f"-march={CPU_ARCH}", "-DBLDM_FAST_CPU_SINGLE_PATH=1"] if CPU_ARCH else []
CXX_FLAGS += ["-g"] if DEBUG else []
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false"] + (["-g"] if DEBUG else [])
LINK_FLAGS = ["-fopenmp"] + ([] if DEBUG else ["-s"])  # -s: strip the symbol table and debug sections


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def torch_requirement(torch_version: str) -> str:
    """``"2.13.0+cpu"`` -> ``"torch>=2.13,<2.14"``: the torch releases whose C++ ABI the extension
    built against ``torch_version`` is meant to load into."""
    major, minor = (int(v) for v in torch_version.split("+", 1)[0].split(".")[:2])
    return f"torch>={major}.{minor},<{major}.{minor + 1}"


def _with_build_info(build_ext_class, info: dict):
    """``build_ext_class`` that also writes ``info`` as bldm_fast/_C_build.json beside the built
    extension (in the build folder, and in the source tree for in-place and editable builds)."""

    class build_ext(build_ext_class):
        def run(self):
            super().run()
            folders = {os.path.join(self.build_lib, "bldm_fast")}
            if self.inplace or getattr(self, "editable_mode", False):
                folders.add(self.get_finalized_command("build_py").get_package_dir("bldm_fast"))
            for folder in folders:
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, BUILD_INFO_FILE), "w") as f:
                    json.dump(info, f, indent=2)
                    f.write("\n")

    return build_ext


def native_extensions():
    """``(ext_modules, cmdclass, install_requires)`` of this build."""
    if os.environ.get("BLDM_FAST_NO_EXT") == "1":
        return [], {}, REQUIRES + [TORCH_WITHOUT_EXT]
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    sources = _rel([os.path.join(ROOT, "kernels", "ops.cpp")]
                   + glob.glob(os.path.join(ROOT, "kernels", "cpu", "*.cpp"))
                   + glob.glob(os.path.join(ROOT, "kernels", "cpu", "isa", "*.cpp")))
    cuda_sources = _rel(glob.glob(os.path.join(ROOT, "kernels", "cuda", "*.cu"))
                        + glob.glob(os.path.join(ROOT, "kernels", "cuda", "*.cpp")))
    with_cuda = (torch.version.cuda is not None and CUDA_HOME is not None and cuda_sources
                 and os.environ.get("BLDM_FAST_NO_CUDA") != "1")
    include_dirs = [os.path.join(ROOT, "kernels", "include"), os.path.join(ROOT, "kernels")]
    kwargs = dict(name="bldm_fast._C", include_dirs=include_dirs, extra_link_args=LINK_FLAGS)
    if with_cuda:
        ext = CUDAExtension(sources=sources + cuda_sources, define_macros=[("BLDM_FAST_WITH_CUDA", "1")],
                            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS}, **kwargs)
    else:
        ext = CppExtension(sources=sources, extra_compile_args={"cxx": CXX_FLAGS}, **kwargs)
    info = {"torch": torch.__version__, "cuda": torch.version.cuda if with_cuda else None,
            "cpu_arch": CPU_ARCH or "dispatch", "debug": DEBUG}
    build_ext = _with_build_info(BuildExtension.with_options(use_ninja=True), info)
    return [ext], {"build_ext": build_ext}, REQUIRES + [torch_requirement(torch.__version__)]


if __name__ == "__main__":  # also under pip: setuptools runs this file as __main__
    ext_modules, cmdclass, install_requires = native_extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass, install_requires=install_requires)
