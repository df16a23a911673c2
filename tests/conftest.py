"""Shared fixtures for the bldm_fast test suite.

* ``backend``: every test that takes it runs once per backend in BACKENDS; a backend missing
  from ``bf.available_backends()`` is skipped with a reason that says what it needs.
* ``present_backends``: the available ones, for cross-backend agreement tests.
* ``bf_testutil.device_for(backend)``: the device its tensors live on ("cuda" for cuda, and for
  triton unless it runs in Triton's interpreter: TRITON_INTERPRET=1, set here when there is no GPU).
* Hypothesis profile "bldm" (loaded by default): no deadline, BLDM_HYPOTHESIS_EXAMPLES examples
  (25 unless set; e.g. BLDM_HYPOTHESIS_EXAMPLES=500 for a long soak); under CI=true the
  derandomized "bldm-ci" profile; BLDM_HYPOTHESIS_PROFILE picks another.
* The guard-band tally of sampled bits (DESIGN.md section 5) is printed at the end of the run.
"""

from __future__ import annotations

import os
import sys

# Without a GPU the Triton backend runs in Triton's interpreter on CPU tensors. Triton reads this
# when kernels are defined, so it must be set before bldm_fast's Triton kernels are imported.
if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
    except ImportError:
        pass

import pytest
from hypothesis import HealthCheck, settings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # `import official`, `import philox_oracle`, `import bf_testutil` in any import mode
    sys.path.insert(0, HERE)

from bf_testutil import BACKENDS, GUARD_TALLY, available_backends, require_backend  # noqa: E402

settings.register_profile(
    "bldm",
    deadline=None,
    max_examples=int(os.environ.get("BLDM_HYPOTHESIS_EXAMPLES", "25")),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    print_blob=True,
)
# CI: the same examples every run (a red CI is then reproducible); locally: fresh examples each run
settings.register_profile("bldm-ci", parent=settings.get_profile("bldm"), derandomize=True)
settings.load_profile(os.environ.get("BLDM_HYPOTHESIS_PROFILE", "bldm-ci" if os.environ.get("CI") else "bldm"))


@pytest.fixture(scope="session", params=BACKENDS, ids=[f"backend={b}" for b in BACKENDS])
def backend(request) -> str:
    """One available backend name (missing ones are skipped, saying what they need)."""
    require_backend(request.param)
    return request.param


@pytest.fixture(scope="session")
def present_backends() -> list[str]:
    """All available backends among BACKENDS, in that order."""
    have = available_backends()
    return [b for b in BACKENDS if b in have]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if GUARD_TALLY["elements"]:
        terminalreporter.write_sep("-", "bldm_fast sampled-bit guard band")
        terminalreporter.write_line(
            f"sampled bits compared with [u < prob64]: {GUARD_TALLY['elements']}; "
            f"inside the guard band: {GUARD_TALLY['in_band']}; "
            f"mismatched there: {GUARD_TALLY['mismatches']}"
        )
