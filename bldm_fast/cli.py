"""The ``bldm-fast`` command line (``python -m bldm_fast``).

Subcommands are entries of :data:`COMMANDS`, added with :func:`register`: a function that adds
the options to an argparse sub-parser and a function that runs it and returns the exit code
Heavy imports (torch, the benchmark) happen inside the runner,
so ``bldm-fast --help`` stays fast.

Exit codes: 0 success, 1 the command ran and failed, 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add subcommand ``name``: ``add_arguments(subparser)`` declares its options, ``run(args)``
    executes it and returns the exit code."""
    COMMANDS[name] = (help, add_arguments, run)


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


# ---------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import report
    from .bench.sections import SECTIONS, section_runner

    if args.json not in (None, "-"):
        report.check_json_path(args.json)  # before the minutes of measuring
    chosen = [name for name in SECTIONS if getattr(args, f"section_{name}")]
    if args.no_ops and not chosen:
        raise ValueError("--no-ops leaves nothing to measure: add a section (" +
                         ", ".join(f"--{n.replace('_', '-')}" for n in SECTIONS) + ")")
    out = sys.stderr if args.json == "-" else sys.stdout
    res = {"cases": []} if args.no_ops else report.run_bench(
        quick=args.quick,
        backends=args.backends,
        ops=args.ops,
        device=args.device,
        baselines=args.baselines,
        compile=not args.no_compile,
        repeats=args.repeats,
        min_time=args.min_time,
        compile_timeout=args.compile_timeout,
        progress=not args.quiet,
        threads=args.threads,
    )
    if not args.no_ops:
        report.print_report(res, file=out)
    res["sections"] = {}
    for name in chosen:
        section = section_runner(name)(args.quick, args.device)
        res["sections"][name] = section
        print("\n" + section["table"], file=out)
    if args.json:
        report.save_json(res, args.json)
        if args.json != "-" and not args.quiet:
            print(f"saved {args.json}", file=sys.stderr)
    failed = [n for c in res["cases"] for n in c["notes"] if n.startswith("CHECK FAILED")]
    errors = [r for c in res["cases"] for r in c["rows"] if r["status"] == "error" and r["kind"] == "bldm_fast"]
    return 1 if failed or errors else 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick", action="store_true", help="few repeats, torch.compile only for the headline step (< 1 min)"
    )
    p.add_argument(
        "--json", metavar="PATH", nargs="?", const="-",
        help="also save every number plus machine info as JSON ('-' or no PATH: JSON on stdout, the report on stderr)",
    )
    p.add_argument(
        "--backends", type=_csv, metavar="LIST", help="comma-separated bldm_fast backends (default: all available)"
    )
    p.add_argument(
        "--ops", type=_csv, metavar="LIST", help="comma-separated ops: pack,unpack,noise,step (default: all)"
    )
    p.add_argument(
        "--baselines",
        type=_csv,
        metavar="LIST",
        help="comma-separated baselines: official,compile,numpy,torch (default: all)",
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile baselines")
    p.add_argument("--device", default="cpu", help="device of the benchmark tensors (default: cpu)")
    p.add_argument(
        "--repeats", type=int, metavar="N", help="interleaved repeats per implementation (median is reported)"
    )
    p.add_argument("--min-time", type=float, metavar="S", help="minimum seconds of back-to-back calls per sample")
    p.add_argument("--compile-timeout", type=float, metavar="S", help="seconds a torch.compile warm-up may take")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch.set_num_threads(N) for the run (default: leave torch's default; 1 is steadier on a busy machine)",
    )
    from .bench.sections import SECTIONS

    p.add_argument("--no-ops", action="store_true", help="skip the kernel tables (run only the sections asked for)")
    for name, (_module, _fn, help_) in SECTIONS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"section_{name}", action="store_true", help=help_)
    p.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar and no 'saved' line on stderr (the report is still printed)")


register(
    "bench", "time every backend against the official PyTorch chain, torch.compile and numpy", _bench_args, _run_bench
)


# ---------------------------------------------------------------------------------------------
# the other commands: each module defines add_<x>_arguments(parser) and run_<x>(args) (``x`` the
# command's name with "-" as "_"), imported only when that command is built or run
# ---------------------------------------------------------------------------------------------


def _lazy(module: str, name: str) -> Callable:
    """``bldm_fast.<module>.<name>``, imported on the first call."""

    def call(*args):
        return getattr(importlib.import_module(f"bldm_fast.{module}"), name)(*args)

    return call


for _name, _module, _help in (
    ("demo", "demo.demo", "sample the bundled digits model with the fused backend and the reference, side by side"),
    ("train", "demo.train", "train the bundled digits model (autoencoder + denoiser) on scikit-learn's digits"),
    ("encode", "data.encode", "encode a folder of images into a packed-latent dataset with a binary autoencoder"),
    ("inspect", "data.inspect", "verify a packed-latent dataset (sizes, sha256) and print its summary"),
    ("sample", "generate.sample", "sample images from official checkpoints, a bldm_fast run or the bundled model"),
    ("decode", "generate.decode", "decode packed codes (sample's codes.npy or an encoded dataset) into PNG images"),
    ("train-denoiser", "train.cli", "train a BLD denoiser on a packed-latent dataset (official recipe, DDP, resume)"),
    ("export-official", "train.export", "write a bldm_fast training run as official-layout checkpoint files"),
    ("env", "envinfo", "print the install: versions, CPU features, and each backend with why it is unavailable"),
    ("export", "data.export",
     "export a packed-latent dataset as Hugging Face Parquet, WebDataset tar or MosaicML MDS shards"),
    ("convert-pipeline", "pipelines.convert",
     "write the bundled model, official files or a train-denoiser run as a diffusers pipeline folder"),
):
    _attr = _name.replace("-", "_")
    register(_name, _help, _lazy(_module, f"add_{_attr}_arguments"), _lazy(_module, f"run_{_attr}"))


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``bldm-fast`` parser. Only the options of the command named in ``argv`` are declared
    (all of them when ``argv`` is None), so ``bldm-fast --help`` imports no command module."""
    parser = argparse.ArgumentParser(
        prog="bldm-fast", description="Fast Binary Latent Diffusion kernels: tools around bldm_fast."
    )
    try:
        from importlib.metadata import version

        ver = version("bldm_fast")
    except Exception:
        ver = "unknown"
    parser.add_argument("--version", action="version", version=f"%(prog)s {ver}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (help_, add, _run) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if chosen is None or name == chosen:
            add(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``bldm-fast`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    _help, _add, run = COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"bldm-fast {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
