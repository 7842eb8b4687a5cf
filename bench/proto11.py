"""Prototype (scratch): walk-forward comparison of similarity models at approaches."""

from __future__ import annotations

import datetime as dt
import sys
import time

import numpy as np
import pyarrow as pa
from scipy.special import expit, logit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from spymaster import evaluation as ev
from spymaster import gold, sessions, vectors
from spymaster.lake import Lake, read_manifest
from spymaster.layout import Layer
from spymaster.settings import StorageSettings

lake = Lake(StorageSettings(lake_uri=sys.argv[1]))
dates = sorted(
    dt.date.fromisoformat(p.split("date=")[1][:10]) for p in lake.list_files("_manifests/gold/episodes")
)
tabs = []
for d in dates:
    files = read_manifest(lake, Layer.GOLD, "episodes", d).files
    tabs.append(lake.read_parquet(files))
t = pa.concat_tables(tabs)
truth = ev.load_truth(lake, dates)
X = vectors.vectors_from_arrow(t.column("vector")).astype(np.float64)
lab = np.asarray(t.column("label").to_pylist(), dtype=object)
ok = lab != None  # noqa: E711
y = lab == "BREAK"
reason = np.asarray(t.column("anchor_reason").to_pylist())
day = np.asarray(t.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False))
ts = np.asarray(t.column("ts").cast(pa.int64()).to_numpy())
kind = np.asarray(t.column("level_kind").to_pylist())
dirn = np.asarray(t.column("direction").to_pylist())
appr = reason == "APPROACH"
print("episodes", len(t), "approaches", appr.sum(), "days", len(dates))

# oracle p at approaches
E = ev.Episodes.from_arrow(t.select(ev.EPISODE_COLUMNS))
rows = np.flatnonzero(appr)
p_or = np.full(len(t), np.nan)
p_or[rows] = ev.match_truth(E, rows, truth, window_s=600)
print("approaches matched to truth", np.isfinite(p_or[rows]).mean())

kinds = sorted(set(kind))
extra = np.column_stack([kind == k for k in kinds] + [dirn == "UP"]).astype(np.float64)


def standardise(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med = np.nanmedian(tr, axis=0)
    q75, q25 = np.nanpercentile(tr, [75, 25], axis=0)
    sc = q75 - q25
    sd = np.nanstd(tr, axis=0)
    sc = np.where(sc > 1e-9, sc, np.where(sd > 1e-9, sd, 1.0))
    f = lambda a: np.clip(np.nan_to_num((a - med) / sc), -5, 5)  # noqa: E731
    return f(tr), f(te)


def knn_p(ztr, ytr, zte, k, prior, alpha=2.0):
    d2 = (zte**2).sum(1)[:, None] + (ztr**2).sum(1)[None, :] - 2 * zte @ ztr.T
    idx = np.argpartition(d2, min(k, ztr.shape[0] - 1), axis=1)[:, :k]
    yy = ytr[idx]
    return (yy.sum(1) + alpha * prior) / (k + alpha), idx


test_days = [d for d in dates if sum(x < sessions.previous_trading_day(d) for x in dates) >= 10]
res: dict[str, list] = {}
store: dict[str, list] = {}
t0 = time.time()
for T in test_days:
    cut = ev.day_number(sessions.previous_trading_day(T))
    trm = (day < cut) & ok & appr
    tem = (day == ev.day_number(T)) & ok & appr
    if tem.sum() == 0:
        continue
    xtr, xte = standardise(X[trm], X[tem])
    xtr = np.column_stack([xtr, extra[trm]])
    xte = np.column_stack([xte, extra[tem]])
    ytr = y[trm].astype(float)
    prior = ytr.mean()
    out = {"base": np.full(tem.sum(), prior)}
    lr = LogisticRegression(C=0.05, max_iter=500).fit(xtr, ytr)
    out["lr"] = lr.predict_proba(xte)[:, 1]
    w = np.abs(lr.coef_[0])
    for k in (50, 100):
        out[f"knn_cos_k{k}"] = knn_p(xtr / np.linalg.norm(xtr, axis=1, keepdims=True), ytr,
                                     xte / np.linalg.norm(xte, axis=1, keepdims=True), k, prior)[0]
        out[f"knn_diag_k{k}"] = knn_p(xtr * w, ytr, xte * w, k, prior)[0]
    # projection on multinomial discriminant directions
    y3 = np.asarray(lab[trm], dtype=str)
    mlr = LogisticRegression(C=0.05, max_iter=500).fit(xtr, y3)
    W = mlr.coef_.T  # [D, 3]
    for k in (50, 100):
        out[f"knn_proj_k{k}"] = knn_p(xtr @ W, ytr, xte @ W, k, prior)[0]
    if len(res.get("base", [])) % 5 == 0 or "hgb" not in store:
        store["hgb"] = [HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_depth=3,
                                                      min_samples_leaf=40).fit(xtr, ytr)]
    out["hgb"] = store["hgb"][0].predict_proba(xte)[:, 1]
    for name, p in out.items():
        res.setdefault(name, []).append(p)
    res.setdefault("_y", []).append(y[tem])
    res.setdefault("_or", []).append(p_or[tem])
print("walk-forward", time.time() - t0, "s")
yy = np.concatenate(res.pop("_y")).astype(float)
por = np.concatenate(res.pop("_or"))
base_b = ev.brier(np.concatenate(res["base"]), yy)
m = np.isfinite(por)
print(f"n={yy.size} rate={yy.mean():.3f} matched={m.mean():.2f}")
por_f = np.where(m, por, np.concatenate(res["base"]))
print(f"oracle: auc {roc_auc_score(yy, por_f):.3f} skill {1 - ev.brier(por_f, yy) / base_b:.3f}")
for name, ps in res.items():
    p = np.concatenate(ps)
    print(f"{name:14s} auc {roc_auc_score(yy, p):.3f} skill {1 - ev.brier(p, yy) / base_b:+.3f} "
          f"ece {ev.ece(p, yy):.3f} mean {p.mean():.3f} corr_or {np.corrcoef(p[m], por[m])[0, 1]:.2f}")
