"""The learned similarity's evaluation: feature table and the approach / all-episode scores.

Forecasts come from :func:`spymaster.retrieval.walkforward.walk_forward`; this module only scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from spymaster.retrieval.walkforward import Rows


def feature_table(
    r: Rows, train: npt.NDArray[np.bool_], test: npt.NDArray[np.bool_], names: Sequence[str]
) -> list[dict[str, Any]]:
    """Per vector dimension: univariate AUC and mutual information with BREAK on the ``test`` rows.

    Walk-forward in one fold: each feature's orientation (does a higher value mean BREAK?) is
    read off the ``train`` rows (earlier days); AUC and MI are measured on the later ``test`` rows.
    """
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import roc_auc_score

    y = (r.label == "BREAK").astype(np.float64)
    labelled = r.label != ""
    tr = train & labelled
    te = test & labelled
    if tr.sum() < 20 or te.sum() < 20 or y[te].min() == y[te].max():
        return []
    xt = np.nan_to_num(r.raw[te])
    mi = mutual_info_classif(xt, y[te], discrete_features=False, random_state=0)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        a = np.nan_to_num(r.raw[tr, j])
        sign = 1.0
        if np.ptp(a) > 0:
            sign = 1.0 if roc_auc_score(y[tr], a) >= 0.5 else -1.0
        b = xt[:, j]
        auc_te = float(roc_auc_score(y[te], sign * b)) if np.ptp(b) > 0 else 0.5
        rows.append({"feature": name, "auc": round(auc_te, 4), "mi": round(float(mi[j]), 4), "sign": sign})
    rows.sort(key=lambda d: -d["auc"])
    return rows
