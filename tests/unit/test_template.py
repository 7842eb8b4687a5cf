"""The SAM template stays deployable: cfn-lint must pass on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_cfn_lint_passes() -> None:
    r = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_function_handler_imports() -> None:
    import importlib

    text = (ROOT / "template.yaml").read_text()
    handlers = [line.split('"')[1] for line in text.splitlines() if "Command:" in line]
    assert handlers
    for h in handlers:
        module, func = h.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), func))
