"""Retrieval: the in-memory index (:mod:`.index`), exact similarity search (:mod:`.similarity`), the
outcome distribution and the whole answer (:mod:`.answer`), and recalibration (:mod:`.calibration`).

Numpy in, dataclasses out; nothing here touches storage.
"""

from spymaster.retrieval.answer import (
    DEFAULT_EMA_ALPHA,
    Answer,
    Distribution,
    Neighbour,
    Params,
    answer,
    beta_interval,
    distribution,
    ema,
    ema_step,
    finite_or_none,
    pooled_params,
    posterior,
    prior_mean,
    query,
)
from spymaster.retrieval.index import Index, Partition, unit_rows
from spymaster.retrieval.similarity import Hits, rank, search, weighted_similarity

__all__ = [
    "DEFAULT_EMA_ALPHA",
    "Answer",
    "Distribution",
    "Hits",
    "Index",
    "Neighbour",
    "Params",
    "Partition",
    "answer",
    "beta_interval",
    "distribution",
    "ema",
    "ema_step",
    "finite_or_none",
    "pooled_params",
    "posterior",
    "prior_mean",
    "query",
    "rank",
    "search",
    "unit_rows",
    "weighted_similarity",
]
