"""``spymaster live`` as a user runs it: a missing source, key or a bad time is a reason, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABENTO_", "SPYMASTER_LIVE_"))}
    return subprocess.run(
        [sys.executable, "-m", "spymaster.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
        check=False,
    )


def test_live_needs_a_source(tmp_path: Path) -> None:
    r = _cli(["--lake", str(tmp_path / "lake"), "live"], {})
    assert r.returncode == 1
    assert "choose one source: --replay DATE or --databento" in r.stderr
    assert "Traceback" not in r.stderr


def test_live_takes_one_source_only(tmp_path: Path) -> None:
    r = _cli(["--lake", str(tmp_path / "lake"), "live", "--replay", "2026-03-03", "--databento"], {})
    assert r.returncode == 1
    assert "choose one source" in r.stderr


def test_live_databento_needs_the_key_from_the_environment(tmp_path: Path) -> None:
    r = _cli(["--lake", str(tmp_path / "lake"), "live", "--databento", "--date", "2026-03-03"], {})
    assert r.returncode == 1
    assert "no Databento API key (DATABENTO_API_KEY)" in r.stderr


def test_live_refuses_a_bad_replay_time(tmp_path: Path) -> None:
    env = {"DATABENTO_API_KEY": "db-some-key-000000000000000abcde"}
    r = _cli(
        ["--lake", str(tmp_path / "lake"), "live", "--databento", "--date", "2026-03-03", "--from", "9h30"],
        env,
    )
    assert r.returncode == 1
    assert "--from must be an ET time HH:MM, not '9h30'" in r.stderr
    assert "Traceback" not in r.stderr
