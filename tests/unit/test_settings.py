"""Worker threads are a setting read from the environment, validated where they are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spymaster.settings import PipelineSettings, WorkerSettings


def test_worker_threads_come_from_the_environment_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert WorkerSettings().worker_threads is None
    monkeypatch.setenv("SPYMASTER_WORKER_THREADS", "1")
    assert WorkerSettings().worker_threads == 1
    # not a definition of the stored features: the manifests' settings do not carry it
    assert "worker_threads" not in PipelineSettings().model_dump()
    monkeypatch.setenv("SPYMASTER_WORKER_THREADS", "0")
    with pytest.raises(ValidationError):
        WorkerSettings()
