"""Fetching the raw files a trading date needs straight from Databento's historical API.

Each (date, kind) is one ``timeseries.get_range`` request for a parent symbol over that date's
Globex session, streamed to a temporary file, checked by its own metadata exactly as a
user-supplied file would be (:func:`spymaster.raw.ingest.place`), and only then placed in ``raw/``.
Files already in the lake are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import databento
import requests
from databento.common.error import BentoError, BentoHttpError
from tqdm import tqdm

from spymaster import sessions
from spymaster.errors import (
    BadInputError,
    DownloadError,
    MislabelledInputError,
    SettingsError,
    SpymasterError,
)
from spymaster.lake import Lake, paths
from spymaster.lake.paths import RawKind
from spymaster.raw import ingest
from spymaster.settings import DatabentoSettings

_REASON_CHARS = 500
_FORBIDDEN = "Databento answered HTTP 403"


@dataclass
class DownloadReport:
    """What happened to every (date, kind) of a run; one failure never hides the others."""

    fetched: list[tuple[dt.date, RawKind]] = field(default_factory=list)
    skipped: list[tuple[dt.date, RawKind]] = field(default_factory=list)
    failed: list[tuple[dt.date, RawKind, str]] = field(default_factory=list)
    unavailable: list[tuple[dt.date, RawKind, str]] = field(default_factory=list)
    """Options files the account may not fetch (HTTP 403: ES options are their own subscription).
    Not a failure: those dates run without options, their dealer features null."""

    @property
    def ok(self) -> bool:
        return not self.failed


def download(
    lake: Lake,
    start: dt.date,
    end: dt.date,
    *,
    settings: DatabentoSettings,
    workers: int = 4,
    force: bool = False,
    progress: bool = True,
    options: bool = True,
) -> DownloadReport:
    """Fetch every raw file the trading days in ``[start, end]`` need, in parallel and resumably.

    ``options=False`` fetches the ES futures files only; with ``options=True`` an options file
    the account is not entitled to (HTTP 403) is reported in ``unavailable``, not ``failed``.

    Raises
    ------
    SettingsError
        ``end`` before ``start``, or fewer than one worker.
    DownloadError
        No API key, or a gateway the client cannot use; raised before any request is made.
        Per-file problems (HTTP errors, refused responses) are reported in ``failed`` instead.
    """
    if workers < 1:
        raise SettingsError(f"workers must be at least 1, got {workers}")
    if end < start:
        raise SettingsError(f"end {end} is before start {start}")
    client = _client(settings)
    report = DownloadReport()
    todo: list[tuple[dt.date, RawKind]] = []
    for date in sessions.trading_days_between(start, end):
        for kind in paths.RAW_KINDS if options else paths.REQUIRED_RAW:
            if not force and lake.exists(paths.raw_file(kind, date)):
                report.skipped.append((date, kind))
            else:
                todo.append((date, kind))
    if todo:
        with tempfile.TemporaryDirectory(prefix="spymaster-download-") as tmp_dir:
            _run(client, lake, todo, Path(tmp_dir), workers, progress, report)
    report.fetched.sort()
    report.skipped.sort()
    report.failed.sort()
    report.unavailable.sort()
    return report


def _client(settings: DatabentoSettings) -> databento.Historical:
    """A client for the configured gateway, or a clear error instead of a failed request per file."""
    key = settings.api_key.get_secret_value().strip() if settings.api_key is not None else ""
    if not key:
        raise DownloadError(
            "no Databento API key: set DATABENTO_API_KEY (or pass one in DatabentoSettings) to download"
        )
    # The client rewrites any gateway to https://, so a plain-http URL would fail on every request.
    if urlsplit(settings.gateway).scheme.lower() == "http":
        raise DownloadError(
            f"gateway {settings.gateway} is plain HTTP; the Databento client only speaks HTTPS"
        )
    try:
        return databento.Historical(key=key, gateway=settings.gateway)
    except ValueError as exc:
        raise DownloadError(f"cannot create a Databento client: {exc}") from exc


def _run(
    client: databento.Historical,
    lake: Lake,
    todo: list[tuple[dt.date, RawKind]],
    tmp_dir: Path,
    workers: int,
    progress: bool,
    report: DownloadReport,
) -> None:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
    try:
        futures: dict[Future[str | None], tuple[dt.date, RawKind]] = {
            pool.submit(_attempt, client, lake, kind, date, tmp_dir): (date, kind) for date, kind in todo
        }
        with tqdm(total=len(todo), desc="download", unit="file", disable=not progress) as bar:
            for fut in as_completed(futures):
                date, kind = futures[fut]
                why = fut.result()
                if why is None:
                    report.fetched.append((date, kind))
                elif why.startswith(_FORBIDDEN) and kind in paths.OPTIONS_RAW:
                    report.unavailable.append((date, kind, why))
                else:
                    report.failed.append((date, kind, why))
                    bar.set_postfix(failed=len(report.failed))
                bar.update()
    except BaseException:
        # Ctrl-C: do not start the queued requests; running ones finish and clean up their temp file.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _attempt(
    client: databento.Historical, lake: Lake, kind: RawKind, date: dt.date, tmp_dir: Path
) -> str | None:
    """Fetch and place one file; ``None`` on success, else a readable reason naming date and schema."""
    what = f"{kind.product.value} {kind.schema} on {date.isoformat()}"
    try:
        _fetch(client, lake, kind, date, tmp_dir)
    except BentoHttpError as exc:
        return _clip(f"Databento answered HTTP {exc.http_status} for {what}: {_detail(exc)}")
    except BentoError as exc:
        return _clip(f"Databento client failed for {what}: {exc}")
    except requests.RequestException as exc:
        return _clip(f"cannot reach Databento for {what}: {exc}")
    except BadInputError as exc:
        return _clip(f"refused the file Databento returned for {what}: {exc.message}")
    except SpymasterError as exc:
        return _clip(f"cannot place {what} in the lake: {exc}")
    except Exception as exc:  # one bad item must not stop the rest of the run
        return _clip(f"{what} failed: {type(exc).__name__}: {exc}")
    return None


def _fetch(client: databento.Historical, lake: Lake, kind: RawKind, date: dt.date, tmp_dir: Path) -> None:
    """Stream one session of one parent symbol to a temp file, check it, then place it atomically."""
    open_ns, close_ns = sessions.globex_session(date)
    tmp = tmp_dir / f"{kind.product.value}-{kind.schema}-{date.isoformat()}.dbn.zst"
    tmp.unlink(missing_ok=True)  # the client refuses to overwrite an existing path
    try:
        client.timeseries.get_range(
            dataset=paths.DATASET,
            symbols=[kind.product.value],
            stype_in="parent",
            schema=kind.schema,
            start=open_ns,
            end=close_ns,
            path=tmp,
        )
        got = ingest.place(tmp)
        if got != (kind, date):
            got_kind, got_date = got
            raise MislabelledInputError(
                f"it holds {got_kind.product.value} {got_kind.schema} for {got_date.isoformat()}",
                date=date,
                schema=kind.schema,
            )
        lake.put_file(tmp, paths.raw_file(kind, date))
    finally:
        tmp.unlink(missing_ok=True)


def _detail(exc: BentoHttpError) -> str:
    """The server's own message, else the start of a short textual body (e.g. a proxy's error page)."""
    if exc.message:
        return str(exc.message)
    body = exc.http_body
    if isinstance(body, str) and body.strip():
        return body.strip()[:200]
    return "no message"


def _clip(reason: str) -> str:
    """One line, bounded: HTTP error bodies can be long and multi-line."""
    flat = " | ".join(line.strip() for line in reason.splitlines() if line.strip())
    return flat if len(flat) <= _REASON_CHARS else flat[: _REASON_CHARS - 1] + "…"
