"""``tools/parity_ecl.py`` against the authors' code, when a checkout is given.

Set ``ECLSR_PARITY_REF`` to a checkout of the authors' ECL code (a RecBole 1.0.1 fork); without
it these tests are skipped. The tool imports the reference in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REF = os.environ.get("ECLSR_PARITY_REF")
TOOL = Path(__file__).resolve().parent.parent / "tools" / "parity_ecl.py"

pytestmark = pytest.mark.skipif(not REF, reason="set ECLSR_PARITY_REF to the authors' code")


@pytest.mark.parametrize(
    ("preset", "average_over"), [("sports", "targets"), ("sports", "slots"), ("toys", "targets")]
)
def test_every_term_that_must_match_matches(preset, average_over):
    argv = [sys.executable, str(TOOL), str(REF), "--preset", preset, "--batch", "16",
            "--average-over", average_over]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every term that must match agrees" in proc.stdout


def test_from_start_positions_are_caught():
    argv = [sys.executable, str(TOOL), str(REF), "--preset", "sports", "--batch", "16",
            "--positions", "from_start"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
