"""``bldm-fast env``: what this install is and which backends it can run, with the reason for each
one it cannot (the real load error of the C++ extension included).

Prints bldm_fast's version and location, the Python/torch/numpy/triton versions, the CPU (model,
vector features, torch's CPU capability), the extension (loaded or why not, the torch it was built
for, its ``-march`` or CPU dispatch), the CPU path its kernels run and one line per backend.
``--json PATH`` (``-``: stdout) writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

#: the x86 vector features the C++ kernels can use, as /proc/cpuinfo names them
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vbmi2")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def env_info() -> dict:
    """The install, as a JSON-serialisable dict.

    Returns:
        ``{"bldm_fast": {"version", "path"}, "versions": {python, torch, numpy, triton},
        "platform", "cpu": {"model", "cores", "features", "torch_capability"},
        "native": {"loaded", "error", "path", "build", "cpu_capability", "cpu_capabilities"},
        "backends": {name: None | reason}}``;
        ``build`` is the extension's build record (torch version, CUDA, ``-march`` or ``"dispatch"``) or
        None; ``native`` also holds ``cpu_capability`` (the CPU path in use) and ``cpu_capabilities``.
    """
    import torch

    import bldm_fast

    from . import _native
    from .bench.machine import machine_info

    m = machine_info("cpu")
    flags = _cpu_flags()
    return {
        "bldm_fast": {"version": bldm_fast.__version__, "path": os.path.dirname(os.path.abspath(bldm_fast.__file__))},
        "versions": {k: v for k, v in m["versions"].items() if k != "bldm_fast"},
        "platform": m["machine"]["platform"],
        "cpu": {"model": m["machine"]["cpu"], "cores": m["machine"]["cores"],
                "cores_usable": m["machine"]["cores_usable"], "torch_threads": torch.get_num_threads(),
                "features": [f for f in CPU_FEATURES if f in flags],
                "torch_capability": m["machine"]["cpu_capability"]},
        "native": _native.native_info(),
        "backends": _native.backend_status(),
    }


def _arch_text(cpu_arch) -> str:
    """The build record's ``cpu_arch`` in words: ``"dispatch"`` (the portable build) or a -march."""
    if cpu_arch == "dispatch":
        return "CPU dispatch (avx512, avx2 and default paths, chosen at run time)"
    return f"-march={cpu_arch}"


def _cpu_path_text(nat: dict) -> str:
    """The CPU path the kernels run, the paths this CPU can run, and the variable that forces one."""
    if nat.get("cpu_capability") is None:
        return "none (the extension did not load or predates CPU dispatch)"
    forced = os.environ.get("BLDM_FAST_CPU_CAPABILITY")
    how = f"BLDM_FAST_CPU_CAPABILITY={forced}" if forced else "BLDM_FAST_CPU_CAPABILITY=<path> forces a lower one"
    return f"{nat['cpu_capability']} (this CPU runs: {', '.join(nat['cpu_capabilities'])}; {how})"


def format_env(info: dict) -> str:
    """The report of :func:`env_info` (several lines, no trailing newline)."""
    v, cpu, nat = info["versions"], info["cpu"], info["native"]
    build = nat["build"]
    built = ("build record missing (built before bldm_fast recorded it; rebuild to record it)" if build is None else
             f"built for torch {build.get('torch')}, CUDA {build.get('cuda') or 'no'}, "
             f"{_arch_text(build.get('cpu_arch'))}{', debug (not stripped)' if build.get('debug') else ''}")
    lines = [
        f"bldm_fast    {info['bldm_fast']['version']} at {info['bldm_fast']['path']}",
        "versions     " + ", ".join(f"{k} {val if val is not None else 'not installed'}" for k, val in v.items()),
        f"platform     {info['platform']}",
        f"cpu          {cpu['model']}; {cpu['cores']} cores ({cpu['cores_usable']} usable), torch threads "
        f"{cpu['torch_threads']}",
        f"cpu features {' '.join(cpu['features']) or '(none of ' + ' '.join(CPU_FEATURES) + ')'}; torch capability "
        f"{cpu['torch_capability']}",
        f"extension    {'loaded from ' + str(nat['path']) if nat['loaded'] else 'NOT LOADED: ' + str(nat['error'])}",
        f"             {built}",
        f"cpu path     {_cpu_path_text(nat)}",
        "backends",
    ]
    for name, reason in info["backends"].items():
        lines.append(f"  {name:<10} {'available' if reason is None else 'unavailable: ' + reason}")
    return "\n".join(lines)


def add_env_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast env``."""
    parser.add_argument("--json", metavar="PATH", nargs="?", const="-",
                        help="also write everything as JSON to PATH ('-' or no PATH: JSON on stdout, the report "
                             "on stderr)")


def run_env(args: argparse.Namespace) -> int:
    """Run ``bldm-fast env``: prints the report (and writes ``--json``); returns 0.

    Raises:
        OSError: the ``--json`` file cannot be written (the CLI prints it as one line, exit code 1).
    """
    if args.json not in (None, "-"):
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise ValueError(f"--json: folder {folder} does not exist")
    info = env_info()
    print(format_env(info), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        print(json.dumps(info, indent=2))
    elif args.json is not None:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    return 0
