"""Walk-forward evaluation of the served kNN's P(BREAK) against baselines, an ablation and the oracle.

Method (docs/EVALUATION.md has the measured tables). Modules: :mod:`.episodes` (gold rows as arrays),
:mod:`.metrics`, :mod:`.forecast` (the split, its embargo and the kNN over it), :mod:`.baselines`,
:mod:`.oracle`, :mod:`.ablation`, :mod:`.plots` and :mod:`.report` (the job: :func:`evaluate`).

* **Test days** are the committed gold dates in ``[start, end]`` with at least ``min_train_days``
  dates of training data. A test episode is one with a primary (8-minute) label; the target is
  ``label == BREAK``.
* **Embargo rule.** For test day T the *cutoff* is the trading day ``embargo_days`` trading days
  before T (weekdays, ``sessions.previous_trading_day`` applied ``embargo_days`` times; T itself
  for ``embargo_days = 0``). Everything the forecast of T uses — neighbours, the partition base
  rate in the prior, the normalisation statistics, the baselines, the boosted classifier and the
  recalibration map — comes from dates **strictly before the cutoff**. With the default embargo of
  one day: neighbour date < T − 1 trading day (Monday's forecasts see Thursday and earlier).
* **Normalisation** is refitted per test day with ``vectors.fit_stats_before`` on the raw vectors
  of the training dates (its trailing ``window_days`` of them), and applied to the training rows
  and the test rows alike; stats that saw the test day (or the embargo day) are never used.
* **kNN** is the served estimator itself: ``retrieval.Partition.build`` over the training rows of
  each (level_kind, direction, time_bucket) partition, then ``retrieval.search`` and
  ``retrieval.distribution`` with ``as_of`` = T (ages are counted from T). Several settings
  (``KnnConfig``) share one search per query: the greedy per-day-capped top-k of a smaller k is a
  prefix of the larger one's.
* **Baselines** on the same episodes: the partition base rate (the kNN's own prior mean
  ``retrieval.prior_mean`` of the partition's training labels), a time-of-day rate (15-minute slots
  after 09:30 over all partitions, shrunk toward the overall training rate with 2.5 pseudo-counts),
  the overall rate, and scikit-learn's ``HistGradientBoostingClassifier`` on the raw vectors plus
  the partition keys and minutes since the open, retrained walk-forward every ``retrain_every``
  test days on everything before the cutoff of the day it is trained for.
* **Oracle** (generated days): an episode is matched to a planted interaction of the same date,
  level kind and direction whose approach contains its anchor (``start_ts ≤ ts ≤ arrival_ts``) and
  whose arrival is at most ``oracle_window_s`` after it; its true probability is the truth table's
  ``p_break``.

Metrics (tiny-array tests in tests/unit/test_evaluation.py): Brier, log loss (p clipped to
[1e-6, 1 − 1e-6]), ECE over 10 equal-width bins (the last closed), AUC (``roc_auc_score``),
top-decile lift (BREAK rate among the ⌈n/10⌉ highest forecasts — ties broken by row order — over
the overall rate), and two coverages of the 80 % interval:

* **oracle coverage** (the one judged against 78–82 %): share of oracle-matched episodes whose
  planted ``p_break`` lies inside the reported interval — the interval is a statement about the
  episode's probability, which only the planted rule knows;
* **decile coverage** (computable on real data, a weaker proxy): share of episodes whose interval
  contains the realised BREAK rate of their decile of forecasts (10 equal-count bins).
"""

from spymaster.evaluation.baselines import boosted_forecast, overall_rate, partition_rate, time_of_day_rate
from spymaster.evaluation.episodes import Episodes, load_episodes
from spymaster.evaluation.forecast import (
    EMBARGO_DAYS,
    MIN_TRAIN_DAYS,
    Forecast,
    KnnConfig,
    WalkForward,
    cutoff_date,
    learned_dim_weights,
    test_rows,
    walk_forward,
)
from spymaster.evaluation.metrics import (
    Scores,
    auc,
    brier,
    decile_coverage,
    ece,
    ece_floor,
    interval_coverage,
    log_loss,
    reliability,
    scores,
    skill,
    top_decile_lift,
)
from spymaster.evaluation.oracle import match_truth
from spymaster.evaluation.report import SERVED_NAME, Report, evaluate

__all__ = [
    "EMBARGO_DAYS",
    "MIN_TRAIN_DAYS",
    "SERVED_NAME",
    "Episodes",
    "Forecast",
    "KnnConfig",
    "Report",
    "Scores",
    "WalkForward",
    "auc",
    "boosted_forecast",
    "brier",
    "cutoff_date",
    "decile_coverage",
    "ece",
    "ece_floor",
    "evaluate",
    "interval_coverage",
    "learned_dim_weights",
    "load_episodes",
    "log_loss",
    "match_truth",
    "overall_rate",
    "partition_rate",
    "reliability",
    "scores",
    "skill",
    "test_rows",
    "time_of_day_rate",
    "top_decile_lift",
    "walk_forward",
]
