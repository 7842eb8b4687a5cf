"""Serving: the lake-backed :class:`Service` the API answers from (read-only; never writes)."""

from spymaster.errors import InvalidQueryError, NotFoundError
from spymaster.serving.days import DayData, et_time, iso_z
from spymaster.serving.query import Point
from spymaster.serving.reports import REPORT_MEDIA_TYPES
from spymaster.serving.service import Service
from spymaster.serving.snapshot import index_from_arrow

__all__ = [
    "REPORT_MEDIA_TYPES",
    "DayData",
    "InvalidQueryError",
    "NotFoundError",
    "Point",
    "Service",
    "et_time",
    "index_from_arrow",
    "iso_z",
]
