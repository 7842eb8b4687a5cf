"""``spymaster.raw.download`` against a local emulation of Databento's historical HTTP API.

The real ``databento`` client runs unmodified: it builds the request, authenticates with HTTP
basic auth, POSTs the form to ``/v0/timeseries.get_range`` and streams the zstd DBN body to the
temp path. The client always speaks HTTPS (it rewrites any gateway URL to ``https://``), so the
emulator serves TLS with a throwaway self-signed certificate that ``requests`` is told to trust
through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import databento as db
import databento_dbn as dbn
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from spymaster import sessions
from spymaster.errors import DownloadError, SettingsError
from spymaster.lake import Lake, paths
from spymaster.lake.paths import Product, RawKind
from spymaster.raw import ingest
from spymaster.raw.download import DownloadReport, download
from spymaster.settings import DatabentoSettings, StorageSettings
from spymaster.synth import dbnwrite

API_KEY = "db-TestKey0123456789abcdefghijk"
GET_RANGE = "/v0/timeseries.get_range"
RECORDS = 3
RAW_SYMBOL = {Product.FUT.value: "ESH6", Product.OPT.value: "ESH6 C6800"}
INSTRUMENT_ID = {Product.FUT.value: 42_001, Product.OPT.value: 42_002}
THU, FRI, SAT, SUN, MON = (dt.date(2026, 3, d) for d in (5, 6, 7, 8, 9))
ALL_KINDS = set(paths.RAW_KINDS)


# -- the emulated API ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    form: dict[str, str]
    user: str | None
    password: str | None


@dataclass
class FakeDatabento:
    """State of the emulator: the key it accepts, the requests it saw and the faults to inject.

    ``faults`` maps (parent symbol, schema, trading date) to one of ``http500`` (a bare 500),
    ``json422`` (a Databento-style JSON error), ``wrong_schema`` (a valid DBN file of another
    schema) or ``wrong_date`` (a valid DBN file of the previous session).
    """

    api_key: str
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    faults: dict[tuple[str, str, dt.date], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    @property
    def get_ranges(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == GET_RANGE]


def _ns(value: str) -> int:
    """The API takes UNIX nanoseconds or ISO 8601."""
    if value.lstrip("-").isdigit():
        return int(value)
    t = dt.datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _session_date(end_ns: int) -> dt.date:
    """The trading date a request window ending at 17:00 ET belongs to."""
    return dt.datetime.fromtimestamp(end_ns // 1_000_000_000, tz=sessions.ET).date()


WRONG_SCHEMA = {
    "definition": "trades",
    "trades": "mbp-1",
    "mbp-1": "trades",
    "mbp-10": "mbp-1",
    "statistics": "trades",
}
"""What ``wrong_schema`` serves instead of the schema asked for."""


def dbn_body(form: dict[str, str], fault: str | None) -> bytes:
    """A real zstd DBN stream answering a get_range form: its metadata and a few in-window records."""
    schema, symbol = form["schema"], form["symbols"]
    start, end = _ns(form["start"]), _ns(form["end"])
    if fault == "wrong_schema":
        schema = WRONG_SCHEMA[schema]
    if fault == "wrong_date":
        start -= 86_400 * 1_000_000_000
        end -= 86_400 * 1_000_000_000
    date = _session_date(end)
    raw, iid = RAW_SYMBOL[symbol], INSTRUMENT_ID[symbol]
    meta = dbnwrite.metadata(
        schema=schema,
        start_ns=start,
        end_ns=end,
        symbols=[symbol],
        mappings={raw: iid},
        date=date,
        dataset=form["dataset"],
    )
    recs = dbnwrite.empty_records(schema, RECORDS)
    names = recs.dtype.names or ()
    # The last minutes of the session: inside the window and on the mapping's UTC date.
    ts = [end - (RECORDS - i) * 60 * 1_000_000_000 for i in range(RECORDS)]
    recs["instrument_id"] = iid
    recs["ts_event"] = ts
    recs["ts_recv"] = ts
    if "price" in names:
        recs["price"] = dbnwrite.to_fixed([6800.25 + 0.25 * i for i in range(RECORDS)])
    if "size" in names:
        recs["size"] = 1
    for name in names:  # empty book levels are undefined in real files, never a price of 0
        if name[:7] in ("bid_px_", "ask_px_"):
            recs[name] = dbn.UNDEF_PRICE
    if "raw_symbol" in names:
        recs["raw_symbol"] = raw.encode()
    return dbnwrite.encode(meta, recs)


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        self._serve("POST", form)

    def do_GET(self) -> None:
        self._serve("GET", {})

    def _serve(self, method: str, form: dict[str, str]) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        user, password = self._basic_auth()
        fake.record(Seen(method, path, form, user, password))
        if method != "POST" or path != GET_RANGE:
            self._json(404, {"detail": f"Not Found: {method} {path}"})
            return
        if user != fake.api_key or password != "":
            self._json(401, {"detail": "Authentication failed."})
            return
        date = _session_date(_ns(form["end"]))
        fault = fake.faults.get((form["symbols"], form["schema"], date))
        if fault == "http403":
            self._json(403, {"detail": f"Not entitled to {form['symbols']} {form['schema']} (no license)."})
            return
        if fault == "http500":
            self._send(500, "text/plain", b"Internal Server Error")
            return
        if fault == "json422":
            detail = {
                "case": "symbology_invalid_request",
                "message": f"No data for {form['symbols']} {form['schema']} in the requested range.",
                "status_code": 422,
                "docs": None,
                "payload": {"dataset": form["dataset"], "schema": form["schema"]},
            }
            self._json(422, {"detail": detail})
            return
        self._send(200, "application/octet-stream", dbn_body(form, fault))

    def _basic_auth(self) -> tuple[str | None, str | None]:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            user, _, password = base64.b64decode(token).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return user, password

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, "application/json", json.dumps(obj).encode())

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    """TLS handshakes happen in each request's own thread, never in the accept loop."""

    daemon_threads = True

    def __init__(self, fake: FakeDatabento, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key), made on the fly."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out = tmp_path_factory.mktemp("tls")
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def fake_databento(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDatabento]:
    """The emulator on an ephemeral 127.0.0.1 port, trusted by ``requests`` and never proxied."""
    cert_path, key_path = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    fake = FakeDatabento(api_key=API_KEY)
    server = _TLSServer(fake, context)
    fake.url = f"https://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-databento", daemon=True
    )
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process temp dir, redirected so tests can see that downloads leave nothing behind."""
    tmp = tmp_path / "scratch"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(StorageSettings(lake_uri=str(tmp_path / "lake")))


def settings_for(fake: FakeDatabento, key: str | None = API_KEY) -> DatabentoSettings:
    return DatabentoSettings(api_key=SecretStr(key) if key is not None else None, gateway=fake.url)


def run(lake: Lake, fake: FakeDatabento, start: dt.date, end: dt.date, **kwargs: Any) -> DownloadReport:
    kwargs.setdefault("progress", False)
    return download(lake, start, end, settings=settings_for(fake), **kwargs)


def items(days: list[dt.date]) -> list[tuple[dt.date, RawKind]]:
    return sorted((d, k) for d in days for k in paths.RAW_KINDS)


def raw_keys(days: list[dt.date]) -> list[str]:
    return sorted(paths.raw_file(k, d) for d, k in items(days))


# -- tests ---------------------------------------------------------------------------------------


def test_two_days_land_every_raw_file(fake_databento: FakeDatabento, lake: Lake, scratch: Path) -> None:
    report = run(lake, fake_databento, THU, FRI, workers=4)

    assert report.failed == []
    assert report.skipped == []
    assert report.fetched == items([THU, FRI])
    assert report.ok
    assert lake.list_files(paths.RAW_ROOT) == raw_keys([THU, FRI])
    for d, kind in report.fetched:
        path = lake.path(paths.raw_file(kind, d))
        assert ingest.place(path) == (kind, d)
        assert len(db.DBNStore.from_file(path).to_ndarray()) == RECORDS
    assert list(scratch.iterdir()) == []

    seen = fake_databento.get_ranges
    assert len(seen) == len(fake_databento.seen) == 14
    asked = set()
    for s in seen:
        assert s.method == "POST"
        assert (s.user, s.password) == (API_KEY, "")
        assert s.form["dataset"] == "GLBX.MDP3"
        assert s.form["stype_in"] == "parent"
        assert s.form["stype_out"] == "instrument_id"
        assert (s.form["encoding"], s.form["compression"]) == ("dbn", "zstd")
        asked.add((s.form["symbols"], s.form["schema"], _ns(s.form["start"]), _ns(s.form["end"])))
    expected = {
        (k.product.value, k.schema, *sessions.globex_session(d)) for d in (THU, FRI) for k in ALL_KINDS
    }
    assert asked == expected
    # Thursday's session opens Wednesday 18:00 ET (EST, so 23:00 UTC) and closes 17:00 ET.
    assert sessions.globex_session(THU) == (
        int(dt.datetime(2026, 3, 4, 23, tzinfo=dt.UTC).timestamp()) * 1_000_000_000,
        int(dt.datetime(2026, 3, 5, 22, tzinfo=dt.UTC).timestamp()) * 1_000_000_000,
    )


def test_rerun_skips_and_force_refetches(fake_databento: FakeDatabento, lake: Lake, scratch: Path) -> None:
    run(lake, fake_databento, THU, FRI)
    assert len(fake_databento.seen) == 14

    again = run(lake, fake_databento, THU, FRI)
    assert len(fake_databento.seen) == 14
    assert again.fetched == []
    assert again.failed == []
    assert again.skipped == items([THU, FRI])

    # Resumable: only what is missing is asked for.
    gone = RawKind(Product.OPT, "statistics")
    lake.delete(paths.raw_file(gone, FRI))
    resumed = run(lake, fake_databento, THU, FRI)
    assert resumed.fetched == [(FRI, gone)]
    assert len(resumed.skipped) == 13
    assert len(fake_databento.seen) == 15
    assert fake_databento.seen[-1].form["schema"] == "statistics"

    forced = run(lake, fake_databento, THU, FRI, force=True)
    assert forced.fetched == items([THU, FRI])
    assert forced.skipped == []
    assert len(fake_databento.seen) == 29
    assert lake.list_files(paths.RAW_ROOT) == raw_keys([THU, FRI])
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(("fault", "status"), [("http500", "500"), ("json422", "422")])
def test_http_error_fails_one_item_only(
    fake_databento: FakeDatabento, lake: Lake, scratch: Path, fault: str, status: str
) -> None:
    bad = RawKind(Product.FUT, "trades")
    fake_databento.faults[(bad.product.value, bad.schema, FRI)] = fault

    report = run(lake, fake_databento, THU, FRI, workers=3)

    assert len(report.failed) == 1
    d, kind, reason = report.failed[0]
    assert (d, kind) == (FRI, bad)
    assert "2026-03-06" in reason
    assert "trades" in reason
    assert "ES.FUT" in reason
    assert f"HTTP {status}" in reason
    assert "\n" not in reason
    if fault == "json422":
        assert "No data for ES.FUT trades" in reason
    else:
        assert "Internal Server Error" in reason
    assert report.fetched == [i for i in items([THU, FRI]) if i != (FRI, bad)]
    assert not lake.exists(paths.raw_file(bad, FRI))
    assert lake.exists(paths.raw_file(bad, THU))
    assert len(lake.list_files(paths.RAW_ROOT)) == 13
    assert list(scratch.iterdir()) == []

    # The next run asks again for the failed item only, and succeeds once the server recovers.
    fake_databento.faults.clear()
    retry = run(lake, fake_databento, THU, FRI)
    assert retry.fetched == [(FRI, bad)]
    assert lake.list_files(paths.RAW_ROOT) == raw_keys([THU, FRI])


@pytest.mark.parametrize(
    ("bad", "fault", "served"),
    [
        (RawKind(Product.OPT, "mbp-1"), "wrong_schema", "trades"),
        (RawKind(Product.FUT, "mbp-10"), "wrong_schema", "mbp-1"),
        (RawKind(Product.FUT, "definition"), "wrong_date", "2026-03-04"),
    ],
)
def test_mislabelled_response_is_refused(
    fake_databento: FakeDatabento, lake: Lake, scratch: Path, bad: RawKind, fault: str, served: str
) -> None:
    fake_databento.faults[(bad.product.value, bad.schema, THU)] = fault

    report = run(lake, fake_databento, THU, THU)

    assert len(report.failed) == 1
    d, kind, reason = report.failed[0]
    assert (d, kind) == (THU, bad)
    assert "refused" in reason
    assert "2026-03-05" in reason
    assert bad.schema in reason
    assert served in reason
    assert not lake.exists(paths.raw_file(bad, THU))
    assert len(report.fetched) == 6
    assert lake.list_files(paths.RAW_ROOT) == [paths.raw_file(k, THU) for _, k in items([THU]) if k != bad]
    # Whatever the server sent by mistake never lands at another key either.
    for d, k in report.fetched:
        assert ingest.place(lake.path(paths.raw_file(k, d))) == (k, d)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_api_key_is_refused_before_any_request(
    fake_databento: FakeDatabento, lake: Lake, key: str | None
) -> None:
    with pytest.raises(DownloadError, match="DATABENTO_API_KEY"):
        download(lake, THU, FRI, settings=settings_for(fake_databento, key), progress=False)
    assert fake_databento.seen == []
    assert lake.list_files(paths.RAW_ROOT) == []


def test_plain_http_gateway_is_refused(fake_databento: FakeDatabento, lake: Lake) -> None:
    """The client would silently switch to HTTPS; say so instead of failing every request."""
    settings = DatabentoSettings(
        api_key=SecretStr(API_KEY), gateway=fake_databento.url.replace("https://", "http://")
    )
    with pytest.raises(DownloadError, match="HTTPS"):
        download(lake, THU, FRI, settings=settings, progress=False)
    assert fake_databento.seen == []


def test_bad_arguments(fake_databento: FakeDatabento, lake: Lake) -> None:
    with pytest.raises(SettingsError, match="before start"):
        run(lake, fake_databento, FRI, THU)
    with pytest.raises(SettingsError, match="workers"):
        run(lake, fake_databento, THU, FRI, workers=0)
    assert fake_databento.seen == []


def test_weekend_is_skipped(fake_databento: FakeDatabento, lake: Lake, scratch: Path) -> None:
    report = run(lake, fake_databento, FRI, MON, progress=True)

    assert report.failed == []
    assert report.fetched == items([FRI, MON])
    assert lake.list_files(paths.RAW_ROOT) == raw_keys([FRI, MON])
    assert not [k for k in lake.list_files(paths.RAW_ROOT) if str(SAT) in k or str(SUN) in k]
    seen = fake_databento.get_ranges
    assert len(seen) == 14
    assert {_session_date(_ns(s.form["end"])) for s in seen} == {FRI, MON}
    # Monday's session opens Sunday 18:00 ET, which on 2026-03-08 is already EDT (22:00 UTC).
    monday_open = int(dt.datetime(2026, 3, 8, 22, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    assert {_ns(s.form["start"]) for s in seen} == {sessions.globex_session(FRI)[0], monday_open}

    only_weekend = run(lake, fake_databento, SAT, SUN)
    assert only_weekend == DownloadReport()
    assert len(fake_databento.seen) == 14


def test_unreachable_gateway_fails_every_item(
    lake: Lake, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = DatabentoSettings(api_key=SecretStr(API_KEY), gateway=f"https://127.0.0.1:{port}")

    report = download(lake, THU, THU, settings=settings, progress=False)

    assert report.fetched == []
    assert [(d, k) for d, k, _ in report.failed] == items([THU])
    for _, k, reason in report.failed:
        assert "cannot reach Databento" in reason
        assert k.schema in reason
        assert "2026-03-05" in reason
    assert lake.list_files(paths.RAW_ROOT) == []
    assert list(scratch.iterdir()) == []


def test_options_are_optional(fake_databento: FakeDatabento, lake: Lake, scratch: Path) -> None:
    # An account without the options subscription: every options request answers 403
    for kind in paths.OPTIONS_RAW:
        for d in (THU, FRI):
            fake_databento.faults[(kind.product.value, kind.schema, d)] = "http403"

    report = run(lake, fake_databento, THU, FRI)

    # Then the futures files land, options are reported unavailable (not failed): the run is ok
    assert report.ok
    assert report.fetched == sorted((d, k) for d in (THU, FRI) for k in paths.REQUIRED_RAW)
    assert sorted((d, k) for d, k, _ in report.unavailable) == sorted(
        (d, k) for d in (THU, FRI) for k in paths.OPTIONS_RAW
    )
    assert all("HTTP 403" in why for _, _, why in report.unavailable)

    # And --no-options never asks for them
    fake_databento.seen.clear()
    report = run(lake, fake_databento, MON, MON, options=False)
    assert report.fetched == sorted((MON, k) for k in paths.REQUIRED_RAW)
    assert {s.form["symbols"] for s in fake_databento.get_ranges} == {Product.FUT.value}
