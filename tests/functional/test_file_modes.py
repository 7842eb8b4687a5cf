"""Lake files honour the umask (issue 12 #11): another user, e.g. a service account running
``serve``, can read a lake built by someone else."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from spymaster.lake import Lake
from spymaster.layers import index, pipeline
from spymaster.settings import StorageSettings
from spymaster.synth import generate


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize(("umask", "want"), [(0o022, 0o644), (0o027, 0o640)])
def test_every_lake_file_follows_the_umask(tmp_path: Path, umask: int, want: int) -> None:
    old = os.umask(umask)
    try:
        # Given a day generated, built to gold and indexed under this umask
        lake = Lake(StorageSettings(lake_uri=str(tmp_path / "lake")))
        dates = generate(lake, dt.date(2026, 3, 10), 1, scale=0.01, seed=41, progress=False)
        assert all(r.ok for r in pipeline.run(lake.settings, dates))
        index.index(lake)
        lake.write_json("_manifests/extra.json", {"a": 1})
    finally:
        os.umask(old)
    # Then raw files, manifests, Parquet and the vector table all have the umask's mode
    modes = _modes(tmp_path / "lake")
    assert any(k.startswith("raw/") for k in modes)
    assert any(k.startswith("_manifests/") for k in modes)
    wrong = {k: oct(m) for k, m in modes.items() if m != want}
    assert not wrong, wrong
