"""Lambda: the HTTP API behind API Gateway (HTTP API, payload v2.0) through Mangum.

The app is built once at import (cold start) from the environment: ``SPYMASTER_LAKE_URI`` and the
AWS variables for the lake (:class:`spymaster.settings.StorageSettings`), ``SPYMASTER_API_KEY``,
``SPYMASTER_MAX_K`` and ``SPYMASTER_TABLE_CHECK_SECONDS`` for the API
(:class:`spymaster.api.ApiSettings`). Nothing touches storage until the first request, which
loads the vector table; later requests in the same container reuse it.
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads: a query's matrix-vector product gains nothing from
# threads, and threaded OpenBLAS stalls for milliseconds when the vCPUs are busy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from mangum import Mangum  # noqa: E402

from spymaster.api import ApiSettings, create_app  # noqa: E402
from spymaster.lake import Lake  # noqa: E402


def make_handler(settings: ApiSettings | None = None, lake: Lake | None = None) -> Mangum:
    """A Mangum handler around a fresh app (tests build one against their own lake)."""
    return Mangum(create_app(settings, lake), lifespan="off")


handler = make_handler()
