"""The evaluation report as the API serves it: ``reports/evaluation/latest.json`` and the files it
lists, read per request; only files named in ``latest.json`` and lying in its run's folder are read.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from spymaster.errors import LakeError, NotFoundError
from spymaster.lake import Lake, paths

REPORT_MEDIA_TYPES: Mapping[str, str] = {
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}
"""The evaluation report's files the API serves, by suffix."""
_REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9]+)?$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NO_REPORT = "no evaluation report in the lake yet (run `spymaster evaluate`)"


def _suffix(name: str) -> str:
    """``reliability.png`` → ``.png`` (``""`` without a suffix)."""
    return name[name.rfind(".") :].lower() if "." in name else ""


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class Reports:
    """The latest evaluation report and its files."""

    lake: Lake | None
    _cache_lock: threading.Lock
    _report: tuple[bytes, dict[str, Any]] | None
    _report_files: OrderedDict[str, bytes]

    # -- the evaluation report ----------------------------------------------------------------------
    def _latest_report(self) -> tuple[bytes, dict[str, Any], dict[str, tuple[str, str]]]:
        """``latest.json`` (bytes and parsed) and the files it lists: name → (lake path, kind).

        A file counts only when its path is ``report_path(run_id, name)`` for a plain file name
        with a served suffix: whatever ``latest.json`` says, nothing outside the run's folder is read.
        """
        if self.lake is None or not self.lake.exists(paths.latest_path()):
            raise NotFoundError(NO_REPORT)
        raw = self.lake.read_bytes(paths.latest_path())
        try:
            latest = json.loads(raw)
        except ValueError:
            latest = None
        run = latest.get("run_id") if isinstance(latest, dict) else None
        if not isinstance(latest, dict) or not isinstance(run, str) or not _RUN_ID.match(run):
            raise NotFoundError("the latest evaluation report is malformed (latest.json)")
        listed: list[tuple[Any, str]] = [(latest.get("report"), "report"), (latest.get("metrics"), "metrics")]
        plots = latest.get("plots")
        if isinstance(plots, dict):
            listed += [(p, "plot") for p in plots.values()]
        files: dict[str, tuple[str, str]] = {}
        for path, kind in listed:
            if not isinstance(path, str):
                continue
            name = path.rsplit("/", 1)[-1]
            if (
                _REPORT_NAME.match(name)
                and _suffix(name) in REPORT_MEDIA_TYPES
                and path == paths.report_path(run, name)
            ):
                files[name] = (path, kind)
        return raw, latest, files

    def _report_bytes(self, path: str) -> bytes:
        with self._cache_lock:
            hit = self._report_files.get(path)
        if hit is not None:
            return hit
        assert self.lake is not None
        try:
            data = self.lake.read_bytes(path)
        except LakeError:
            raise NotFoundError("a file of the latest evaluation report is missing from the lake") from None
        with self._cache_lock:
            self._report_files[path] = data
            while len(self._report_files) > 16:
                self._report_files.popitem(last=False)
        return data

    def report(self) -> dict[str, Any]:
        """The latest evaluation report: its run, markdown, metrics and the files it lists."""
        raw, latest, files = self._latest_report()
        cached = self._report
        if cached is not None and cached[0] == raw:
            return cached[1]
        by_kind = {kind: name for name, (_, kind) in files.items() if kind != "plot"}
        if "report" not in by_kind:
            raise NotFoundError("the latest evaluation report lists no markdown report")
        markdown = self._report_bytes(files[by_kind["report"]][0]).decode("utf-8", errors="replace")
        metrics: Any = {}
        if "metrics" in by_kind:
            try:
                metrics = json.loads(self._report_bytes(files[by_kind["metrics"]][0]))
            except ValueError:
                metrics = {}
        listed = latest.get("plots")
        plots: dict[Any, Any] = listed if isinstance(listed, dict) else {}
        # The span tested: the requested bounds, else (an open end) the first / last test day.
        tested = metrics.get("test_dates") if isinstance(metrics, dict) else None
        tested = [str(d) for d in tested] if isinstance(tested, list) and tested else [None]
        out = {
            "run_id": latest["run_id"],
            "created_at": _str_or_none(latest.get("created_at")),
            "start": _str_or_none(latest.get("start")) or tested[0],
            "end": _str_or_none(latest.get("end")) or tested[-1],
            "markdown": markdown,
            "metrics": metrics if isinstance(metrics, dict) else {},
            "plots": {
                str(key): path.rsplit("/", 1)[-1]
                for key, path in plots.items()
                if isinstance(path, str) and path.rsplit("/", 1)[-1] in files
            },
            "files": [
                {"name": name, "kind": kind, "media_type": REPORT_MEDIA_TYPES[_suffix(name)]}
                for name, (_, kind) in files.items()
            ],
        }
        self._report = (raw, out)
        return out

    def report_file(self, name: str) -> tuple[bytes, str]:
        """A file of the latest evaluation report (only names ``latest.json`` lists): bytes, media type."""
        _, _, files = self._latest_report()
        hit = files.get(name)
        if hit is None:
            raise NotFoundError("not a file of the latest evaluation report")
        return self._report_bytes(hit[0]), REPORT_MEDIA_TYPES[_suffix(name)]
