"""Typed settings, read once from the environment (and overridden by explicit CLI options)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    """Where the lake lives and how to reach its object store.

    AWS credentials and endpoint come through the standard AWS variables so the same
    settings work against AWS S3, MinIO and the moto server used in tests.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    lake_uri: str = Field(default="./lake", validation_alias="SPYMASTER_LAKE_URI")
    endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    region: str = Field(default="us-east-1", validation_alias="AWS_DEFAULT_REGION")
    access_key_id: str | None = Field(default=None, validation_alias="AWS_ACCESS_KEY_ID")
    secret_access_key: SecretStr | None = Field(default=None, validation_alias="AWS_SECRET_ACCESS_KEY")
    session_token: SecretStr | None = Field(default=None, validation_alias="AWS_SESSION_TOKEN")

    @field_validator("lake_uri")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("lake URI must not be empty")
        return v.rstrip("/") or "/"

    @property
    def is_s3(self) -> bool:
        return self.lake_uri.startswith("s3://")

    def storage_options(self) -> dict[str, Any]:
        """One mapping handed to pyarrow, fsspec and LanceDB alike (keys in object_store spelling)."""
        opts: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            opts["endpoint"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                opts["allow_http"] = "true"
        if self.access_key_id:
            opts["access_key_id"] = self.access_key_id
        if self.secret_access_key:
            opts["secret_access_key"] = self.secret_access_key.get_secret_value()
        if self.session_token:
            opts["session_token"] = self.session_token.get_secret_value()
        return opts


class DatabentoSettings(BaseSettings):
    """Credentials and gateway for the Databento historical client."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    api_key: SecretStr | None = Field(default=None, validation_alias="DATABENTO_API_KEY")
    gateway: str = Field(default="https://hist.databento.com", validation_alias="DATABENTO_GATEWAY")


class DatabentoLiveSettings(BaseSettings):
    """The ``databento.Live`` source (key, gateway, what to subscribe, how to reconnect).

    The same ``DATABENTO_API_KEY`` as the historical client; ``DATABENTO_LIVE_GATEWAY`` and
    ``DATABENTO_LIVE_PORT`` point the client at another gateway (the tests' local one).
    """

    model_config = SettingsConfigDict(
        env_prefix="SPYMASTER_LIVE_", extra="ignore", populate_by_name=True, frozen=True
    )

    api_key: SecretStr | None = Field(default=None, validation_alias="DATABENTO_API_KEY")
    gateway: str | None = Field(default=None, validation_alias="DATABENTO_LIVE_GATEWAY")
    """``None``: the client's own gateway for the dataset."""
    port: int = Field(default=13000, ge=1, le=65535, validation_alias="DATABENTO_LIVE_PORT")
    options: bool = False
    """Subscribe to ES options too (a separate, costly subscription): dealer features need it."""
    reconnect_policy: Literal["none", "reconnect"] = "reconnect"
    """``reconnect``: on a lost connection, reconnect and resume from the last record's time
    (intraday replay) with no record missed or repeated; ``none``: a lost connection is an error."""
    max_reconnects: int = Field(default=20, ge=0)
    """Consecutive failed reconnects before the source gives up (a record received resets it)."""
    reconnect_backoff_s: float = Field(default=0.5, ge=0)
    """First wait before reconnecting; doubled per consecutive failure, at most 30 s."""
    resume_margin_s: float = Field(default=1.0, ge=0)
    """A resume asks for records from this long before the last arrival time: ``start=`` filters
    on exchange time, arrival order is capture time, and capture trails the exchange by less."""
    slow_reader_behavior: Literal["warn", "skip"] = "warn"
    """What the gateway does when we read too slowly: warn, or skip ahead (records are lost)."""
    heartbeat_interval_s: int | None = Field(default=None, ge=5)

    @field_validator("api_key", "gateway", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


class PushSettings(BaseSettings):
    """The live push: per-subscriber queues of the SSE stream (``SPYMASTER_PUSH_`` prefix)."""

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_PUSH_", extra="ignore", frozen=True)

    queue_size: int = Field(default=256, ge=1)
    """Updates one subscriber may have waiting; beyond it the oldest are dropped (and counted)."""
    ping_s: float = Field(default=15.0, gt=0)
    """SSE keep-alive comment interval."""
    status_s: float = Field(default=1.0, gt=0)
    """How often each subscriber gets a ``status`` event (lag, drops) when nothing else changes."""


@lru_cache(maxsize=1)
def storage_settings() -> StorageSettings:
    """Read storage settings once per process (cold start)."""
    return StorageSettings()


def storage_settings_for(lake_uri: str | None) -> StorageSettings:
    """Settings with an explicit lake URI (``--lake``) taking precedence over the environment."""
    base = storage_settings()
    if lake_uri is None:
        return base
    return base.model_copy(update={"lake_uri": StorageSettings._no_trailing_slash(lake_uri)})


class ApiSettings(BaseSettings):
    """API settings from the environment (``SPYMASTER_`` prefix)."""

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_", extra="ignore")

    api_key: SecretStr | None = None
    """When set, every /v1 route needs header ``X-API-Key`` with this value."""
    max_k: int = Field(default=500, ge=1, le=100_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Request bodies larger than this are refused with 413 before they are read into memory
    (the largest valid body, a vector query, is a few kilobytes)."""
    table_check_seconds: float = Field(default=10.0, ge=0)
    """Check the vector table's version at most this often (a new version is reloaded)."""
    blas_threads: int = Field(default=1, ge=0)
    """BLAS threads for the process (0: leave as is). A query is a matrix-vector product over at
    most a few ten thousand rows: threads gain nothing there, and on a busy machine multi-threaded
    OpenBLAS stalls (measured in docs/BENCHMARKS.md)."""

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


class PipelineSettings(BaseSettings):
    """Definitions the silver/gold layers are computed with (``SPYMASTER_`` env prefix).

    Changing one changes the meaning of stored features, so each is recorded in the manifests.
    """

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_", extra="ignore", frozen=True)

    premarket_start: str = "04:00"
    """Start of the pre-market window (ET) whose high/low are PM_HIGH/PM_LOW; it ends at 09:30."""
    atr_bars: int = 14
    """Wilder ATR length, in 2-minute bars: the unit of every distance."""
    zone_atr: float = 2.0
    """|distance| at or below this many ATR is the approach zone."""
    barrier_ticks: int = 4
    """Book depth within this many ticks of a level counts as its barrier."""
    tape_near_atr: float = 0.5
    """Trades within this many ATR of a level count as traded near it."""
    gex_convention: Literal["calls_long", "dealer_short"] = "calls_long"
    """Dealer sign convention: +calls/−puts (dealers long calls, short puts) or −Γ·OI for all."""
    risk_free_rate: float = 0.0
    """Discount rate for Black-76; for 0DTE options its effect on gamma is ~1e-5 relative."""

    @field_validator("premarket_start")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        import datetime as _dt

        _dt.time.fromisoformat(v)
        return v


class WorkerSettings(BaseSettings):
    """How many threads a per-date job may keep busy (``SPYMASTER_`` env prefix).

    Not a definition (nothing stored depends on it), so not part of :class:`PipelineSettings`.
    """

    model_config = SettingsConfigDict(env_prefix="SPYMASTER_", extra="ignore", frozen=True)

    worker_threads: int | None = Field(default=None, ge=1)
    """``None``: each worker takes its share of the machine's cores (bronze decodes and writes on
    several threads, Arrow and BLAS use their pools). ``1``: every stage on one thread, Arrow's and
    BLAS's pools of one: what a per-date Lambda at the default memory (1 vCPU) can use, so a
    backfill of such workers scales with their number (``bench/bench_pipeline.py``)."""


@dataclass(frozen=True)
class ServedRetrieval:
    """What every API query uses unless the request says otherwise: the walk-forward evaluation's
    recommendation (docs/EVALUATION.md, "What is served"). The evaluation's reference setting reads
    the same object, so the served and the evaluated estimator cannot drift apart.
    """

    k: int = 50
    max_per_day: int = 2
    weights: Mapping[str, float] = field(default_factory=lambda: {"dealer": 0.0})
    """Per-group query weights (missing groups weigh 1; 0 drops a group): the ablation dropped
    ``dealer`` on both synthetic lakes; ``barrier`` and ``tape`` were dropped on one and kept on the
    other (all within about one standard error), so they stay."""
    pooled_prior: float = 100.0
    """Pseudo-counts shrinking the partition base rate toward the pooled split of all partitions
    (``Params.default_prior`` = this × the pooled split of rows before as_of; 0 = the fixed 1/1/0.5)."""
    interval_max_total: float | None = 2.5
    """Upper bound on the Beta interval's total pseudo-count N = n_eff + prior strength (None: no
    cap). Uncapped, the 80 % interval held the planted probability far less often than 80 % on two
    synthetic lakes; capped, about as often as it claims (docs/EVALUATION.md)."""
    recalibration: Literal["isotonic", "platt", "none"] = "none"


@dataclass(frozen=True)
class LearnedSimilarity:
    """The learned similarity (issue 11; docs/EVALUATION.md): chosen on lake A, checked on lake B."""

    method: str = "diag"
    """``diag``: per-dimension weights |β| of an L2 logistic regression (``proj``: its 3-class
    coefficient directions); measured side by side in the evaluation."""
    k: int = 100
    """Neighbours behind an answer at an approach, weighed by ``kernel``. Chosen with it on lake A's
    first 30 test days (approach skill, session 5: Gaussian k 100 18.5 %, k 70 18.3 %, k 150 18.2 %,
    k 200 17.6 %; uniform k 50 17.7 %), checked on lake B (docs/EVALUATION.md). Session 4, uniform,
    first 25 days: k 50 / C 0.005 17.9 %, k 100 / C 0.01 17.5 %, k 150 16.8 %, k 30 16.4 %."""
    kernel: str = "gaussian"
    """``gaussian``: neighbour i weighs exp(−(d_i / d_k)²) (``metric.kernel_weights``); nearer setups
    count more without the answer resting on a handful of them (``uniform``: all k alike)."""
    c: float = 0.005
    """L2 strength (inverse) of the metric's logistic regression: a flat optimum at 0.005–0.01 (lake A's
    first 25 test days; earlier sweep at k = 100: 17.0 % at 0.01, 14.7 % at 0.05, 11.5 % at 0.2)."""
    population: str = "APPROACH"
    """Rows the model is fitted on and searches: the approach episodes (the moment of the question)."""
    min_train_days: int = 10
    platt_min_days: int = 10
    """Earlier test days of out-of-sample answers before the Platt map is fitted (identity until then):
    outcomes within a day move together, so a map fitted on a few days' hundreds of answers
    overfits them (lake A, all episodes, first 5 test days: served null kNN −11.5 % skill with the
    map after one day against −0.3 % without it)."""
    interval_evidence: float = 2.5
    """Episodes' worth of evidence behind a Beta 80 % interval (used when ``interval_logit`` is None)."""
    interval_logit: tuple[float, float] | None = (-3.27, 2.04)
    """Log-odds offsets of the 80 % interval around the answer (``walkforward.logit_interval``): the
    10 % / 90 % quantiles of logit(planted p) − logit(served answer) over lake A's 2 086 matched
    approaches (session 5: kernel k 100), checked on lake B (coverage 81.3 %, docs/EVALUATION.md).
    A generator prior: real data has no planted p to refit them on."""
    neighbours_shown: int = 10


@dataclass(frozen=True)
class AnnSearch:
    """When a partition is searched through an ANN index on the LanceDB table instead of exactly in
    memory (issue 16; measured by ``bench/bench_scale.py``, chosen in docs/ARCHITECTURE.md "Scale").

    The indexer and the API read the same object, so they agree on which partitions have left
    memory; a disagreement costs speed, never correctness (a table without the index is searched
    flat by LanceDB, and an index nobody uses is harmless).
    """

    min_rows: int | None = 100_000
    """A partition with more rows than this is served by ANN search over the table (its vectors
    are not held in memory); ``None``: every partition exact in memory. Chosen by memory, not
    latency (``bench/bench_scale.py``, docs/ARCHITECTURE.md "Scale"): exact in-memory search stays
    faster than one ANN query up to ≈ 300–400 k rows on local disk (far more from S3), but at ≈ 1 kB
    per episode resident 60 partitions of 100 k rows already take ≈ 6 GB of a 10 GB Lambda, so
    the largest partitions leave memory first once the lake passes ≈ 6 M episodes."""
    index_type: Literal["IVF_PQ", "IVF_HNSW_SQ"] = "IVF_HNSW_SQ"
    """The vector index built on the table's ``vector`` column (cosine). IVF-HNSW-SQ: the same
    recall@50 and about the local-disk latency of IVF-PQ, built 3–6× faster (the indexer retrains
    it on growth); from moto S3 IVF-PQ was 2× faster in one run, the same in another."""
    nprobes: int = 64
    """IVF lists searched per query: the partition prefilter leaves ≈ 1/60 of each list, so it
    takes more lists than an unfiltered search to find 50 neighbours of one partition."""
    refine_factor: int = 4
    """Candidates re-scored with the full vectors by LanceDB (× the limit)."""
    pool: int = 4
    """Candidates fetched per answer (× k); they are re-ranked exactly with the request's weights
    in memory, and the day cap applied; the pool grows ×4 while too few are kept."""
    retrain_growth: float = 2.0
    """Retrain the index when the table has grown this many times since it was trained (new rows
    are added to the trained lists by each compaction until then)."""


LEARNED = LearnedSimilarity()
"""The one set of learned-similarity settings (fit job, evaluation and service)."""

SERVED = ServedRetrieval()
"""The one set of served retrieval defaults."""

ANN = AnnSearch()
"""Which partitions leave memory for the table's ANN index (indexer and API alike)."""
