"""SASS instructions per element of the step, noise and Philox kernels for sm_90, without a GPU.

Compiles every CUDA kernel (kernels/cuda/*.cu, nvcc with setup.py's flags) and every Triton kernel
variant (Triton's real compiler behind tests/triton_sm90_compile.py's fake sm_90 driver), reads the
SASS back with cuobjdump, and prints one markdown table row per (op, variant, backend): the
instructions one thread executes per element on the hot path, and the counts of the instructions
that matter (Philox multiplies, MUFU, IEEE-division checks, global loads and stores by width).

Method. The SASS of a kernel is split into basic blocks (a block ends at a branch, EXIT or RET and
starts at a branch target; a CALL, i.e. an IEEE-division slow path, is counted as one instruction
and not followed). The hot path is the path that executes the most global stores (STG: all the
work, e.g. no early ``break`` past the end of the tensor) and, among those, the fewest
instructions (fast division, 16-byte loads where aligned). Predicated instructions count as
executed: they issue either way.
- CUDA kernels are grid-stride loops: the hot path runs once through the outermost natural loop
  (header to back edge; dominator-based, so out-of-line slow paths that jump back are not loops),
  which handles the elements of one packed byte (8) or one Philox counter (4) per thread. The
  CUDA kernels test their options (guidance, final step, mask, ...) at run time, so each variant
  is compiled from the kernel's own source turned into an inlined device function and called from
  a wrapper kernel that fixes those options (the real kernel also executes its option tests, a
  few uniform branches per iteration). Registers are those of the real kernels, as setup.py
  builds them.
- Triton kernels have no loop: one program handles BLOCK bytes (or counters) with num_warps * 32
  threads, and the hot path from entry to EXIT handles BLOCK * 8 (or * 4) / (num_warps * 32)
  elements per thread.

Every variant is the C % 8 == 0 layout (the benchmarks' C = 64 and the official models'): there
each packed byte holds 8 channels and one path does all the work; for other C the CUDA path
depends on each byte's bit count and counter phase.

Usage: python benchmarks/sass_counts.py [--out FILE.md]. Exits 1 with one line on stderr when a
tool is missing or a kernel does not compile or parse.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
sys.path.insert(0, str(ROOT))
from setup import NVCC_FLAGS  # noqa: E402

NVCC_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__"]
PHILOX_KEY_A, PHILOX_KEY_B = 0x9E3779B9, 0xBB67AE85
# Key-schedule words k + r * A (r = 1..9) of Philox4x32-10 appear as immediates where the key is
# re-derived in the hot path instead of hoisted out of it.
KEY_SCHEDULE = {(r * k) % 2**32 for r in range(1, 10) for k in (PHILOX_KEY_A, PHILOX_KEY_B)}

# CUDA variants: (op, variant, source, wrapper signature, the call, elements per iteration, global
# stores per iteration). The wrapper fixes the kernel's run-time options; __builtin_assume tells
# the compiler an input pointer is set.
_STEP_PLAIN = "a.uncond = nullptr; a.mask = nullptr; a.known = nullptr; a.probs = nullptr; a.unpacked = nullptr;"
_STEP_GUIDED = ("__builtin_assume(a.uncond != nullptr); a.mask = nullptr; a.known = nullptr; a.probs = nullptr; "
                "a.unpacked = nullptr;")
CUDA_VARIANTS = [
    ("step", "float32", "step.cu", "StepArgs a",
     f"{_STEP_PLAIN} __builtin_assume(a.scalars[6] == 0.0f); step_kernel<float, true>(a);",
     8, 1),
    ("step", "float32 +guidance", "step.cu", "StepArgs a",
     f"{_STEP_GUIDED} __builtin_assume(a.scalars[6] == 0.0f); step_kernel<float, true>(a);", 8, 1),
    ("step", "bfloat16", "step.cu", "StepArgs a",
     f"{_STEP_PLAIN} __builtin_assume(a.scalars[6] == 0.0f); step_kernel<__nv_bfloat16, true>(a);", 8, 1),
    ("step", "bfloat16 +guidance", "step.cu", "StepArgs a",
     f"{_STEP_GUIDED} __builtin_assume(a.scalars[6] == 0.0f); step_kernel<__nv_bfloat16, true>(a);", 8, 1),
    ("step", "float32 final", "step.cu", "StepArgs a",
     f"{_STEP_PLAIN} __builtin_assume(a.scalars[6] != 0.0f); step_kernel<float, true>(a);", 8, 1),
    ("noise", "packed", "noise.cu", "NoiseArgs a", "a.unpacked = nullptr; a.flip = nullptr; noise_kernel<true>(a);",
     8, 1),
    ("noise", "packed +flip", "noise.cu", "NoiseArgs a",
     "a.unpacked = nullptr; __builtin_assume(a.flip != nullptr); noise_kernel<true>(a);", 8, 2),
    ("philox", "uniform float32", "philox.cu", "void* out, int64_t n, const int64_t* rng",
     "fill_kernel(out, true, n, rng);", 4, 4),
    ("philox", "words int64", "philox.cu", "void* out, int64_t n, const int64_t* rng",
     "fill_kernel(out, false, n, rng);", 4, 4),
]
REAL_SOURCES = ["step.cu", "noise.cu", "philox.cu"]

# Triton variants: (op, variant, the bldm_fast call, run in the worker with C = 64 (aligned)). The Triton step reads
# the final-step flag from its scalars tensor at run time, so the final step is the same kernel: no row of its own.
TRITON_VARIANTS = [
    ("step", "float32", "bf.sample_step(lg32, xt, 9, 4, sched, seed=1, backend='triton')"),
    ("step", "float32 +guidance", "bf.sample_step(lg32, xt, 9, 4, sched, seed=1, guidance=1.5, uncond_logits=lg32, "
                                  "backend='triton')"),
    ("step", "bfloat16", "bf.sample_step(lg16, xt, 9, 4, sched, seed=1, backend='triton')"),
    ("step", "bfloat16 +guidance", "bf.sample_step(lg16, xt, 9, 4, sched, seed=1, guidance=1.5, uncond_logits=lg16, "
                                   "backend='triton')"),
    ("noise", "packed", "bf.bernoulli_noise(xt, t, sched, 64, seed=1, backend='triton')"),
    ("noise", "packed +flip", "bf.bernoulli_noise(xt, t, sched, 64, seed=1, out_dtype=None, return_flip=True, "
                              "backend='triton')"),
    ("philox", "uniform float32", "bf.philox_uniform(1, 0, 1000, backend='triton')"),
    ("philox", "words int64", "bf.philox_words(1, 0, 1000, backend='triton')"),
]
# Elements per unit of a Triton kernel's BLOCK: packed bytes (8 elements) or Philox counters (4).
TRITON_UNIT = {"_step_kernel": 8, "_noise_kernel": 8, "_fill_kernel": 4}


class SassError(RuntimeError):
    """A tool is missing, a kernel did not compile, or its SASS did not parse as expected."""


# ---------------------------------------------------------------------------------------------
# Tools


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SassError("nvcc not found on PATH")
    return nvcc


def _triton_bin() -> pathlib.Path | None:
    try:
        from triton.backends.nvidia import compiler
    except ImportError:
        return None
    return pathlib.Path(compiler.__file__).parent / "bin"


def cuobjdump() -> str:
    """cuobjdump from PATH, the CUDA toolkit nvcc belongs to, or the copy Triton bundles."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    dirs = [pathlib.Path(_nvcc()).resolve().parent, *map(pathlib.Path, sorted(glob.glob("/usr/local/cuda*/bin")))]
    tb = _triton_bin()
    dirs += [tb] if tb else []
    for d in dirs:
        if (d / "cuobjdump").exists():
            return str(d / "cuobjdump")
    raise SassError("cuobjdump not found (PATH, the CUDA toolkit, Triton's nvidia backend)")


def _version_line(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    lines = [ln for ln in out.splitlines() if "release" in ln]
    return lines[-1].strip() if lines else out.strip().splitlines()[-1]


def tool_versions() -> dict:
    import triton
    from triton.backends.nvidia import compiler

    return dict(nvcc=_version_line([_nvcc(), "--version"]), cuobjdump=_version_line([cuobjdump(), "--version"]),
                triton=triton.__version__, triton_ptxas=_version_line([compiler.get_ptxas(90).path, "--version"]))


# ---------------------------------------------------------------------------------------------
# SASS parsing and the hot path

_INSN = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_FUNC = re.compile(r"^\s+Function : (\S+)")
_IMM = re.compile(r"(-?)0x([0-9a-f]+)")


def disassemble(cubin: pathlib.Path) -> dict[str, list[tuple[int, str]]]:
    """{function name: [(address, instruction text without predicate-free trailing ';')]}."""
    run = subprocess.run([cuobjdump(), "-sass", str(cubin)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise SassError(f"cuobjdump -sass {cubin.name}: {run.stderr.strip()[-300:]}")
    funcs, cur = {}, None
    for line in run.stdout.splitlines():
        m = _FUNC.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = _INSN.match(line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2)))
    if not funcs:
        raise SassError(f"no functions in the SASS of {cubin.name}")
    return funcs


def resources(cubin: pathlib.Path) -> dict[str, dict[str, int]]:
    """{function name: {"REG": .., "STACK": .., "LOCAL": ..}} from cuobjdump -res-usage."""
    out = subprocess.run([cuobjdump(), "-res-usage", str(cubin)], capture_output=True, text=True, timeout=300).stdout
    res, name = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            name = m.group(1)
        elif name and "REG:" in line:
            res[name] = {k: int(v) for k, v in re.findall(r"(REG|STACK|LOCAL):(\d+)", line)}
            name = None
    return res


def opcode(text: str) -> str:
    parts = text.split()
    return parts[1] if parts[0].startswith("@") and len(parts) > 1 else parts[0]


def _target(text: str) -> int | None:
    m = re.search(r"\b0x([0-9a-f]+)\s*$", text)
    return int(m.group(1), 16) if m else None


def basic_blocks(insns: list[tuple[int, str]]):
    """(blocks, successors): blocks[i] = list of instruction texts; successors[i] = block ids."""
    addrs = [a for a, _ in insns]
    index = {a: i for i, a in enumerate(addrs)}
    leaders = {0}
    for i, (_, text) in enumerate(insns):
        op = opcode(text)
        if op.startswith(("BRA", "EXIT", "RET", "JMP", "BRX")):
            leaders.add(i + 1)
            t = _target(text) if op.startswith(("BRA", "JMP")) else None
            if t is not None and t in index:
                leaders.add(index[t])
    starts = sorted(x for x in leaders if x < len(insns))
    block_of = {s: b for b, s in enumerate(starts)}
    blocks, succ = [], []
    for b, s in enumerate(starts):
        e = starts[b + 1] if b + 1 < len(starts) else len(insns)
        body = [t for _, t in insns[s:e]]
        blocks.append(body)
        last = body[-1]
        op, predicated = opcode(last), last.startswith("@") or ".DIV" in opcode(last)
        nxt = [block_of[e]] if e in block_of else []
        if op.startswith(("BRA", "JMP")):
            t = _target(last)
            targets = [block_of[index[t]]] if t is not None and t in index and index[t] in block_of else []
            succ.append(targets + (nxt if predicated else []))
        elif op.startswith(("EXIT", "RET", "BRX")):
            succ.append(nxt if predicated else [])
        else:
            succ.append(nxt)
    return blocks, succ


def _dominators(succ: list[list[int]]) -> dict[int, set[int]]:
    reach, stack = set(), [0]
    while stack:
        b = stack.pop()
        if b not in reach:
            reach.add(b)
            stack.extend(succ[b])
    preds = {b: [p for p in reach if b in succ[p]] for b in reach}
    dom = {b: set(reach) for b in reach}
    dom[0] = {0}
    changed = True
    while changed:
        changed = False
        for b in sorted(reach - {0}):
            new = {b} | set.intersection(*(dom[p] for p in preds[b])) if preds[b] else {b}
            if new != dom[b]:
                dom[b], changed = new, True
    return dom


def _is_store(text: str) -> bool:
    return opcode(text).startswith(("STG", "ST.E"))


def hot_path(insns: list[tuple[int, str]], looped: bool, longest: bool = False) -> list[str]:
    """The instructions of the hot path (see the module docstring): one pass through the
    outermost natural loop when ``looped``, else entry to EXIT. Among the paths with the most
    stores the shortest, or with ``longest`` the longest (the Triton step, whose two branches both
    store every byte: the final-step threshold, taken once per run, and the posterior draw of
    every other step)."""
    blocks, succ = basic_blocks(insns)
    dom = _dominators(succ)
    back = [(u, h) for u in dom for h in succ[u] if h in dom and h in dom[u]]
    if looped:
        if not back:
            raise SassError("no loop found in a grid-stride kernel")
        loops = {}
        for u, h in back:
            body, stack = {h}, [u]
            while stack:
                b = stack.pop()
                if b not in body:
                    body.add(b)
                    stack.extend(p for p in dom if b in succ[p])
            loops.setdefault(h, set()).update(body)
        header = max(loops, key=lambda h: len(loops[h]))
        nodes, start = loops[header], header
        ends = {u for u, h in back if h == header}
    else:
        nodes, start = set(dom), 0
        ends = {b for b in dom if not succ[b] and opcode(blocks[b][-1]).startswith("EXIT")}
    # Longest-by-stores, then shortest-by-instructions path on the DAG left after removing every
    # back edge (inner loops are run once).
    dag = {b: [s for s in succ[b] if s in nodes and (b, s) not in back] for b in nodes}
    best: dict[int, tuple[int, int, list[int]] | None] = {}

    def visit(b):
        if b in best:
            return best[b]
        best[b] = None  # cycles were removed; guards against malformed input
        here = (sum(map(_is_store, blocks[b])), len(blocks[b]))
        options = [(here[0] + r[0], here[1] + r[1], [b] + r[2]) for s in dag[b] if (r := visit(s)) is not None]
        if b in ends:
            options.append((here[0], here[1], [b]))
        best[b] = max(options, key=lambda o: (o[0], o[1] if longest else -o[1])) if options else None
        return best[b]

    sys.setrecursionlimit(max(10000, 4 * len(blocks)))
    path = visit(start)
    if path is None:
        raise SassError("no path from the loop header to its back edge (or from entry to EXIT)")
    return [t for b in path[2] for t in blocks[b]]


def _width(op: str) -> str:
    for suffix, bits in ((".128", "128"), (".64", "64"), (".U16", "16"), (".S16", "16"), (".U8", "8"), (".S8", "8")):
        if suffix in op:
            return bits
    return "32"


def counts(path: list[str]) -> dict:
    """Key instruction counts of a path: Philox multiplies (IMAD.HI, IMAD.WIDE.U32), MUFU.EX2,
    MUFU.RCP, FCHK (IEEE division check), key-schedule immediates, global loads/stores by width."""
    out = dict(instructions=len(path), imad_hi=0, imad_wide=0, ex2=0, rcp=0, fchk=0, calls=0, key_schedule=0,
               loads={}, stores={})
    for text in path:
        op = opcode(text)
        out["imad_hi"] += op.startswith("IMAD.HI")
        out["imad_wide"] += op.startswith("IMAD.WIDE.U32")
        out["ex2"] += op.startswith("MUFU.EX2")
        out["rcp"] += op.startswith("MUFU.RCP")
        out["fchk"] += op.startswith("FCHK")
        out["calls"] += op.startswith("CALL")
        imms = {(-int(h, 16) if s else int(h, 16)) % 2**32 for s, h in _IMM.findall(text.split(None, 1)[-1])}
        out["key_schedule"] += bool(imms & KEY_SCHEDULE)
        if op.startswith(("LDG", "LD.E")):
            out["loads"][_width(op)] = out["loads"].get(_width(op), 0) + 1
        elif op.startswith(("STG", "ST.E")):
            out["stores"][_width(op)] = out["stores"].get(_width(op), 0) + 1
    return out


# ---------------------------------------------------------------------------------------------
# CUDA


def _nvcc_cubin(source: pathlib.Path, cubin: pathlib.Path) -> None:
    cmd = [_nvcc(), "-cubin", "-arch=sm_90", *NVCC_FLAGS, *NVCC_DEFINES, f"-I{KERNELS / 'include'}",
           f"-I{KERNELS / 'cuda'}", f"-I{KERNELS}", str(source), "-o", str(cubin)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise SassError(f"nvcc {source.name}: {run.stderr.strip()[-500:]}")


def specialised_source(source: str, variants: list[tuple]) -> str:
    """The kernels of one .cu file as inlined device functions (host launchers cut off), plus one
    extern "C" wrapper kernel per variant that fixes its run-time options."""
    text = (KERNELS / "cuda" / source).read_text()
    kernel_decl = "__global__ void __launch_bounds__(kThreads) "
    anon_end = text.find("\n}  // namespace\n")
    if kernel_decl not in text or anon_end < 0:
        raise SassError(f"kernels/cuda/{source}: expected '{kernel_decl.strip()}' kernels in an anonymous namespace "
                        "closed by '}  // namespace' (update benchmarks/sass_counts.py to the new layout)")
    body = text[:anon_end].replace(kernel_decl, "__device__ __forceinline__ void ")
    wrappers = [f'extern "C" __global__ void __launch_bounds__(kThreads) {_cuda_name(v)}({v[3]}) {{ {v[4]} }}'
                for v in variants]
    return body + "\n}  // namespace\n\n" + "\n".join(wrappers) + "\n\n}  // namespace bldm_fast::cuda\n"


def _cuda_name(variant: tuple) -> str:
    return "sass_" + re.sub(r"\W+", "_", f"{variant[0]}_{variant[1]}").strip("_")


def cuda_rows(work: pathlib.Path) -> tuple[list[dict], list[dict]]:
    """(variant rows, real-kernel rows) for the CUDA kernels."""
    jobs = {}
    for source in sorted({v[2] for v in CUDA_VARIANTS}):
        spec = work / f"sass_{source}"
        spec.write_text(specialised_source(source, [v for v in CUDA_VARIANTS if v[2] == source]))
        jobs[("spec", source)] = (spec, work / f"spec_{source}.cubin")
    for source in REAL_SOURCES:
        jobs[("real", source)] = (KERNELS / "cuda" / source, work / f"real_{source}.cubin")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for fut in [pool.submit(_nvcc_cubin, src, cubin) for src, cubin in jobs.values()]:
            fut.result()
    rows = []
    for v in CUDA_VARIANTS:
        cubin = jobs[("spec", v[2])][1]
        funcs, res = disassemble(cubin), resources(cubin)
        name = _cuda_name(v)
        if name not in funcs:
            raise SassError(f"{name} missing from the SASS of {v[2]}")
        c = counts(hot_path(funcs[name], looped=True))
        stores = sum(c["stores"].values())
        if stores % v[6]:
            raise SassError(f"{name}: {stores} global stores per loop pass, expected a multiple of {v[6]}")
        rows.append(dict(op=v[0], variant=v[1], backend="cuda", regs=res[name]["REG"],
                         elements=v[5] * stores // v[6], **c))
    real = []
    for source in REAL_SOURCES:
        cubin = jobs[("real", source)][1]
        funcs, res = disassemble(cubin), resources(cubin)
        for name, insns in sorted(funcs.items()):
            real.append(dict(source=source, kernel=_demangle(name), regs=res[name]["REG"],
                             stack=res[name].get("STACK", 0), local=res[name].get("LOCAL", 0),
                             instructions=sum(opcode(t) != "NOP" for _, t in insns)))
    return rows, real


def _demangle(name: str) -> str:
    try:
        out = subprocess.run(["c++filt", name], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return name
    return re.sub(r"bldm_fast::cuda::\(anonymous namespace\)::", "", out) or name


# ---------------------------------------------------------------------------------------------
# Triton (compiled in a subprocess: the fake driver is process-wide)


def _triton_worker(out_dir: pathlib.Path, part: int, parts: int) -> None:
    """Compiles TRITON_VARIANTS[part::parts], writing <index>.cubin and meta_<part>.json to out_dir."""
    sys.path.insert(0, str(ROOT / "tests"))
    import triton_sm90_compile  # noqa: F401  (installs the compile-only sm_90 driver, imports bldm_fast)
    import torch
    from triton.runtime.jit import JITFunction

    bf = triton_sm90_compile.bf
    captured = []
    compile_fn = JITFunction._do_compile

    def capture(self, key, signature, device, constexprs, options, attrs, warmup):
        kernel = compile_fn(self, key, signature, device, constexprs, options, attrs, warmup)
        flags = {self.arg_names[p[0]]: v for p, v in constexprs.items() if isinstance(v, (bool, int))}
        captured.append((self.fn.__name__, kernel, flags))
        return kernel

    JITFunction._do_compile = capture
    sched = bf.BernoulliSchedule(16, "cos")
    bits = torch.rand(3, 5, 64) < 0.5
    xt = bf.pack_bits(bits, backend="reference")
    lg32, lg16 = torch.randn(3, 5, 64), torch.randn(3, 5, 64).to(torch.bfloat16)
    t = torch.tensor([1, 9, 16])
    env = dict(bf=bf, sched=sched, xt=xt, lg32=lg32, lg16=lg16, t=t)
    meta = []
    for i, (op, variant, call) in list(enumerate(TRITON_VARIANTS))[part::parts]:
        captured.clear()
        eval(call, env)  # noqa: S307  (a fixed call from TRITON_VARIANTS)
        mine = [c for c in captured if c[0] in TRITON_UNIT]
        if len(mine) != 1:
            raise SassError(f"triton {op} {variant}: compiled {[c[0] for c in captured]}, expected one kernel")
        name, kernel, flags = mine[0]
        (out_dir / f"{i}.cubin").write_bytes(kernel.asm["cubin"])
        meta.append(dict(index=i, op=op, variant=variant, kernel=name, num_warps=kernel.metadata.num_warps,
                         block=flags["BLOCK"], function=kernel.metadata.name))
    (out_dir / f"meta_{part}.json").write_text(json.dumps(meta))


def triton_rows(work: pathlib.Path, parts: int = 2) -> list[dict]:
    """The Triton variant rows, compiled by ``parts`` worker processes side by side."""
    out_dir = work / "triton"
    out_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_CACHE_DIR": str(work / "triton-cache")}
    workers = [subprocess.Popen([sys.executable, __file__, "--triton-worker", str(out_dir), "--part", str(k),
                                 "--parts", str(parts)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=env) for k in range(parts)]
    for w in workers:
        _, err = w.communicate(timeout=900)
        if w.returncode != 0:
            raise SassError("Triton compile for sm_90 failed: " + err.strip()[-800:])
    meta = sorted((m for k in range(parts) for m in json.loads((out_dir / f"meta_{k}.json").read_text())),
                  key=lambda m: m["index"])
    rows = []
    for m in meta:
        cubin = out_dir / f"{m['index']}.cubin"
        funcs, res = disassemble(cubin), resources(cubin)
        if len(funcs) != 1:
            raise SassError(f"triton {m['op']} {m['variant']}: {len(funcs)} functions in its cubin")
        (name, insns), = funcs.items()
        c = counts(hot_path(insns, looped=False, longest=m["op"] == "step"))
        per_thread = m["block"] * TRITON_UNIT[m["kernel"]] // (32 * m["num_warps"])
        rows.append(dict(op=m["op"], variant=m["variant"], backend="triton", regs=res[name]["REG"],
                         elements=per_thread, **c))
    return rows


# ---------------------------------------------------------------------------------------------
# Table


def _per(x: int, n: int) -> str:
    return f"{x / n:.2f}"


def _widths(d: dict) -> str:
    return " ".join(f"{w}b x{d[w]}" for w in sorted(d, key=int, reverse=True)) or "-"


def table(rows: list[dict], real: list[dict], versions: dict) -> str:
    lines = [f"SASS for sm_90: nvcc {versions['nvcc']} (flags of setup.py: {' '.join(NVCC_FLAGS)}), Triton "
             f"{versions['triton']} (ptxas {versions['triton_ptxas']}), cuobjdump {versions['cuobjdump']}.", "",
             "Hot path of one thread (`python benchmarks/sass_counts.py`; method in its docstring). 'path': its "
             "instructions for 'elements' elements; the key counts are per element; loads and stores are per path, "
             "by width in bits. 'key sched.': instructions on the path with a Philox key-schedule immediate "
             "(0 = hoisted or folded).", "",
             "| op | variant | backend | regs | path | elements | instr / element | IMAD.HI | IMAD.WIDE.U32 | MUFU.EX2 "
             "| MUFU.RCP | FCHK | key sched. | global loads | global stores |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (["step", "noise", "philox"].index(r["op"]), r["variant"], r["backend"])):
        n = r["elements"]
        lines.append(f"| {r['op']} | {r['variant']} | {r['backend']} | {r['regs']} | {r['instructions']} | {n} "
                     f"| {_per(r['instructions'], n)} | {_per(r['imad_hi'], n)} | {_per(r['imad_wide'], n)} "
                     f"| {_per(r['ex2'], n)} | {_per(r['rcp'], n)} | {_per(r['fchk'], n)} | {r['key_schedule']} "
                     f"| {_widths(r['loads'])} | {_widths(r['stores'])} |")
    lines += ["", "The real CUDA kernels (options tested at run time), as setup.py builds them: registers, stack and "
              "local (spill) bytes per thread, SASS instructions in all (NOPs excluded).", "",
              "| source | kernel | regs | stack | local | instructions |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['source']} | `{r['kernel']}` | {r['regs']} | {r['stack']} | {r['local']} | {r['instructions']} |"
              for r in real]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="also write the table to this markdown file")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.add_argument("--triton-worker", help=argparse.SUPPRESS)
    p.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if args.triton_worker:
            _triton_worker(pathlib.Path(args.triton_worker), args.part, args.parts)
            return 0
        _nvcc(), cuobjdump()  # a missing tool fails before any compile starts
        with tempfile.TemporaryDirectory(prefix="sass-counts-") as tmp:
            work = pathlib.Path(tmp)
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                triton_future = pool.submit(triton_rows, work)
                rows, real = cuda_rows(work)
                rows += triton_future.result()
        text = table(rows, real, tool_versions())
    except (SassError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"sass_counts: error: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    if args.out:
        pathlib.Path(args.out).write_text(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(rows=rows, real=real, versions=tool_versions()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
