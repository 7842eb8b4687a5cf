"""`make demo` does what the README says: generate, run, evaluate (for the page's Evaluation
button), then serve (checked with make's dry run: nothing is executed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_demo_evaluates_before_it_serves(tmp_path: Path) -> None:
    lake = tmp_path / "demo-lake"
    out = subprocess.run(
        ["make", "-n", "demo", f"LAKE={lake}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    steps = [line for line in out.splitlines() if f"--lake {lake} " in line]
    verbs = [line.split(f"--lake {lake} ", 1)[1].split()[0] for line in steps]
    assert "evaluate" in verbs
    assert verbs.index("run") < verbs.index("evaluate") < verbs.index("serve")
    evaluate = steps[verbs.index("evaluate")]
    assert f"{lake}/reports/evaluation/latest.json" in evaluate  # kept on a second make demo
