"""Import-time rows (issue 16 item 6; a benchmark, not a timed test): the seconds `import bldm_fast`
adds to `import torch`, and `bldm-fast --help` beyond the bare interpreter, each the median of
fresh interpreters. Run: python benchmarks/import_time.py [--repeats N]."""

import argparse
import statistics
import subprocess
import sys
import time


def _seconds(code: str, repeats: int) -> float:
    """Median wall time of ``code`` in fresh interpreters."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_DELTA = """import time
import torch
t0 = time.perf_counter()
{stmt}
print(time.perf_counter() - t0)"""


def _delta(stmt: str, repeats: int) -> float:
    """Median seconds of ``stmt`` measured inside fresh interpreters that imported torch first
    (so the noise of torch's own multi-second import on a loaded machine does not enter)."""
    out = [float(subprocess.run([sys.executable, "-c", _DELTA.format(stmt=stmt)], check=True, capture_output=True,
                                text=True).stdout) for _ in range(repeats)]
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bare = _seconds("pass", args.repeats)
    with_bf = _delta("import bldm_fast", args.repeats)
    first_op = _delta("import bldm_fast as bf\nbf.pack_bits(torch.ones(2, 8))", args.repeats)
    cli_help = _seconds("import sys; sys.argv = ['bldm-fast', '--help']\n"
                        "from bldm_fast.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass", args.repeats)
    print(f"| row | seconds (median of {args.repeats}) |\n| --- | --- |")
    print(f"| import bldm_fast beyond import torch | {with_bf:.3f} |")
    print(f"| import + first op (pack_bits: loads _C, registers the fakes) beyond import torch | {first_op:.3f} |")
    print(f"| bldm-fast --help beyond the interpreter | {cli_help - bare:.3f} |")


if __name__ == "__main__":
    main()
