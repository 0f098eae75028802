"""The sympy child of the math verifier ends quietly when its parent is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_child_whose_parent_stopped_reading_exits_without_a_traceback():
    # The reader of the child's replies is gone before the child says "ready" (a stage that ended
    # with os._exit while a replacement child was starting): it used to print a BrokenPipeError.
    proc = subprocess.Popen([sys.executable, "-m", "verifiers._math_sympy"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()[-2000:]
