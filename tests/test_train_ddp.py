"""train-denoiser under torch.distributed (gloo on CPU, 127.0.0.1 only): the ranks read disjoint
batches, and the DDP step (gradients averaged over 2 ranks of B samples) equals one process on
the concatenated 2B batch within float tolerance; ``torchrun --nproc_per_node 2`` runs the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from train_data import SMALL, cli_env, run_cli, write_digits_dataset

B = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return write_digits_dataset(tmp_path_factory.mktemp("ddp") / "ds", "probs", n=128)


def one_step(ds_path: str, batch: int, rank: int, world: int, steps: int = 2) -> dict:
    """The trainer's data path and loss for ``steps`` steps on this rank: batch indices, losses and
    the (DDP-averaged) gradients of each step, no optimizer update in between."""
    from bldm_fast.data import ContiguousBatchSampler
    from bldm_fast.models import BinaryTransformer
    from bldm_fast.train import TrainConfig
    from bldm_fast.train.sources import StepBatches, StepReader
    from bldm_fast.train.step import StepLoss
    from bldm_fast.train.streams import StepStreams
    from bldm_fast.train.trainer import open_dataset

    cfg = TrainConfig(n_embd=32, n_head=2, n_layers=1, total_steps=16, batch_size=batch, run_length=4, seed=5,
                      label_dropout=0.0, aux=0.5).validate()
    dset, data = open_dataset(ds_path)
    C, L = data["channels"], data["latent_hw"][0] ** 2
    torch.manual_seed(cfg.seed)
    model = BinaryTransformer(C, n_embd=32, n_head=2, n_layers=1, latent_size=4, total_steps=16,
                              num_classes=data["num_classes"])
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = ContiguousBatchSampler(dset.count, batch, run_length=cfg.run_length, seed=cfg.seed, num_replicas=world,
                                     rank=rank, drop_last=True)
    streams = StepStreams(cfg.seed, rank, world, batch, L * C)
    reader = StepReader(dset, streams, labels=True)
    step_loss = StepLoss(cfg, data["code_mode"], C, streams, data["num_classes"], torch.device("cpu"))
    out = {"indices": [], "loss": [], "grads": []}
    for step, idx in StepBatches(sampler, 1, steps):
        codes, labels, _ = reader.__getitems__((step, idx))
        res = step_loss(ddp, codes, labels, step)
        res["loss"].backward()
        out["indices"].append(list(idx))
        out["loss"].append(float(res["loss"].detach()))
        out["grads"].append({n: p.grad.clone() for n, p in model.named_parameters()})
        model.zero_grad(set_to_none=True)
    return out


def _worker(rank: int, world: int, port: int, ds_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(one_step(ds_path, B, rank, world), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_step_equals_single_process_on_concatenated_batch(ds, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), ds, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = one_step(ds, 2 * B, 0, 1)
    for s in range(2):
        a, b = ranks[0]["indices"][s], ranks[1]["indices"][s]
        assert len(a) == len(b) == B and not set(a) & set(b)  # disjoint rank batches
        assert a + b == single["indices"][s]  # ... that concatenate to the single process's batch
        # DDP averages the gradients: every rank holds the mean, equal to the 2B-batch gradient
        for name, g in single["grads"][s].items():
            for r in range(2):
                torch.testing.assert_close(ranks[r]["grads"][s][name], g, rtol=1e-5, atol=1e-7)
        # the loss is a mean over samples, so the ranks' losses average to the single one
        assert abs((ranks[0]["loss"][s] + ranks[1]["loss"][s]) / 2 - single["loss"][s]) < 1e-6
        assert ranks[0]["loss"][s] != ranks[1]["loss"][s]  # the ranks did see different data
    assert ranks[0]["indices"][0] != ranks[0]["indices"][1]


def test_torchrun_two_ranks_matches_one_process(ds, tmp_path):
    args = [*SMALL, "--steps", "12", "--save-every", "6", "--run-length", "4", "--label-dropout", "0"]
    args[args.index("--batch-size") + 1] = str(B)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "bldm_fast", "train-denoiser", ds, "--out",
           str(tmp_path / "ddp"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("trained to step 12") == 1  # one summary line, from rank 0
    args[args.index("--batch-size") + 1] = str(2 * B)
    r = run_cli("train-denoiser", ds, "--out", tmp_path / "one", *args)
    assert r.returncode == 0, r.stderr

    def rows(run):
        with open(tmp_path / run / "metrics.jsonl") as f:
            return [json.loads(x) for x in f]

    ddp, one = rows("ddp"), rows("one")
    assert [x["step"] for x in ddp] == list(range(1, 13))
    for x, y in zip(ddp, one):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5) and x["acc"] == pytest.approx(y["acc"], abs=1e-6)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)
    a = torch.load(tmp_path / "ddp" / "checkpoints" / "step_12.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "checkpoints" / "step_12.pt", weights_only=True)
    assert a["world_size"] == 2 and len(a["rng"]) == 2 and b["world_size"] == 1
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-4)
