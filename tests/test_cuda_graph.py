"""The sampling loop on CUDA reads nothing back until it returns (issue 16 item 3), so it can be
captured in a CUDA graph: capture, replay, and match the eager bits. Needs a GPU (skipped
without one, saying so)."""

import pytest
import torch

import bldm_fast as bf
from bldm_fast.diffusion.diffusion import check_nan_flags, sample_loop
from bldm_fast.diffusion.grid import sampling_grid, step_pairs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA-graph capture)")

B, L, C, T = 3, 16, 24, 32


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_sampling_loop_captured_in_a_cuda_graph_replays_the_eager_bits(backend):
    if backend not in bf.available_backends():
        pytest.skip(f"backend {backend} not available")
    sched = bf.BernoulliSchedule(T, "cos")
    weight = torch.randn(C, C, device="cuda") * 0.5
    grid = sampling_grid(T, 8)

    def model_fn(x_in, t):
        h = x_in @ weight + 0.01 * t
        return h, h * 0.5

    def loop():
        return sample_loop(model_fn, sched, grid, batch_size=B, length=L, channels=C, device="cuda", seed=7,
                           base=0, temperature=0.9, guidance=1.5, backend=backend, check_nan=False)

    eager, _, flags = loop()  # also puts the schedule tables on the device
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        loop()  # warm-up on the capture stream
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured, _, captured_flags = loop()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, eager)
    check_nan_flags(captured_flags, step_pairs(grid))
    check_nan_flags(flags, step_pairs(grid))


def test_nan_in_the_loop_raises_at_the_end_naming_the_step():
    sched = bf.BernoulliSchedule(T)
    grid = sampling_grid(T, 6)

    def model_fn(x_in, t):
        out = torch.zeros_like(x_in)
        return (out + float("nan") if t == grid[2] else out), None

    for backend in [b for b in ("cuda", "triton") if b in bf.available_backends()]:
        with pytest.raises(ValueError, match="first at step 2"):
            sample_loop(model_fn, sched, grid, batch_size=B, length=L, channels=C, device="cuda", seed=1, base=0,
                        backend=backend)
