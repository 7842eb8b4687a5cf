"""The HTTP API: :func:`create_app` (:mod:`.app`), its contract (:mod:`.schemas`), dependencies (:mod:`.deps`)
and routes (:mod:`.routes`)."""

from spymaster.api.app import create_app, limit_blas_threads
from spymaster.settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "limit_blas_threads"]
