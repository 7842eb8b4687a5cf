"""Bronze's writers follow the threads a worker is held to (``run --threads`` and the date-job Lambda)."""

from __future__ import annotations

import os

from spymaster.layers import pipeline


def test_one_thread_writes_on_the_callers_thread_and_more_threads_write_that_many_files() -> None:
    assert pipeline.writers_for(1) == 0
    assert pipeline.writers_for(3) == 3
    assert pipeline.writers_for(2, workers=4) == 2


def test_no_limit_shares_the_cores_among_the_workers() -> None:
    cores = os.cpu_count() or 1
    assert pipeline.writers_for(None) == cores
    assert pipeline.writers_for(None, workers=cores * 2) == 1
