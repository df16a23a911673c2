"""``RUN/metrics.jsonl``: one JSON object per logged training step, and the end-of-run summary.

Keys of a record: ``step`` (1-based update count), ``loss``, ``bce`` (the official ``bce_loss``),
``acc``, ``aux`` (the auxiliary loss, ``null`` when ``aux == 0``), ``lr``, ``grad_norm`` (before
clipping), ``samples_per_s`` (all ranks, this step), ``time`` (seconds since the run started or
resumed, wall clock) and ``epoch``. Under DDP the losses are averaged over the ranks. Floats are
written with ``repr`` precision, so losses compare bit for bit.

On resume the file is cut back to the records of the steps the checkpoint holds (atomically), so
it reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os

from ..data.durable import fsync_dir

METRICS_FILE = "metrics.jsonl"


def read_metrics(run: str) -> list[dict]:
    """The records of ``RUN/metrics.jsonl`` (a torn last line, from a kill, is skipped)."""
    path = os.path.join(run, METRICS_FILE)
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                break
    return out


class MetricsLog:
    """Appends records to ``RUN/metrics.jsonl`` (flushed per line).

    Args:
        run: the run folder. resume_step: keep only the records with ``step <= resume_step``
            (``0``: start a new file).
    """

    def __init__(self, run: str, resume_step: int):
        self.path = os.path.join(run, METRICS_FILE)
        kept = [r for r in read_metrics(run) if r.get("step", 0) <= resume_step] if resume_step else []
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(run)
        self.kept = kept
        self._f = open(self.path, "a")

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._f.write(json.dumps(clean) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def summary_line(records: list[dict], *, steps_done: int, elapsed: float, run: str) -> str:
    """One line: steps, first and last loss (means of up to 10 logged steps), throughput, the run."""
    if not records:
        return f"trained {steps_done} steps in {elapsed:.1f} s; wrote {run}"
    head = [r["loss"] for r in records[:10] if r.get("loss") is not None]
    tail = [r["loss"] for r in records[-10:] if r.get("loss") is not None]
    rates = [r["samples_per_s"] for r in records if r.get("samples_per_s")]
    rate = sorted(rates)[len(rates) // 2] if rates else float("nan")
    first = sum(head) / max(1, len(head))
    last = sum(tail) / max(1, len(tail))
    return (f"trained to step {records[-1]['step']} ({steps_done} steps this run, {elapsed:.1f} s): loss "
            f"{first:.4f} -> {last:.4f} (mean of the first / last 10 logged steps), "
            f"acc {records[-1].get('acc', 0):.4f}, "
            f"{rate:.1f} samples/s (median); wrote {run}")
