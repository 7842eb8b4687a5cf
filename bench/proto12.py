"""Scratch: walk-forward of the learned similarity on a generated lake."""
from __future__ import annotations
import datetime as dt, sys, time
import numpy as np, pyarrow as pa
from sklearn.metrics import roc_auc_score
from spymaster import evaluation as ev, sessions
from spymaster.retrieval import walkforward as se
from spymaster.lake import Lake, read_manifest
from spymaster.lake.paths import Layer
from spymaster.settings import StorageSettings

lake = Lake(StorageSettings(lake_uri=sys.argv[1]))
which = sys.argv[2] if len(sys.argv) > 2 else "approach"
k = int(sys.argv[3]) if len(sys.argv) > 3 else 100
c = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
dates = sorted(dt.date.fromisoformat(p.split("date=")[1][:10]) for p in lake.list_files("_manifests/gold/episodes"))
t = pa.concat_tables([lake.read_parquet(read_manifest(lake, Layer.GOLD, "episodes", d).files) for d in dates])
r = se.Rows.from_arrow(t)
truth = ev.load_truth(lake, dates)
appr = r.reason == "APPROACH"
E = ev.Episodes.from_arrow(t.select(ev.EPISODE_COLUMNS))
p_or = np.full(len(t), np.nan)
rows = np.flatnonzero(appr)
p_or[rows] = ev.match_truth(E, rows, truth, window_s=600)
print("episodes", len(t), "approaches", appr.sum(), "matched", np.isfinite(p_or[rows]).mean().round(3))
dn = [ev.day_number(d) for d in dates]
cut = lambda d: ev.day_number(sessions.previous_trading_day(ev.from_day_number(d)))  # noqa: E731
test_days = [d for d in dn if sum(x < cut(d) for x in dn) >= 10]
filt = appr if which == "approach" else np.ones(len(t), bool)
for shuffle in (None, 1)[: 1 if len(sys.argv) > 5 else 2]:
    t0 = time.time()
    f = se.walk_forward(r, test_days, cut, train_filter=filt, test_filter=filt, k=k, c=c, shuffle_seed=shuffle)
    y = (r.label[f.rows] == "BREAK").astype(float)
    base = f.p["base"]; bb = ev.brier(base, y)
    print(f"--- {which} shuffle={shuffle} n={y.size} rate={y.mean():.3f} {time.time()-t0:.0f}s")
    po = p_or[f.rows]; m = np.isfinite(po)
    if shuffle is None and m.any():
        pof = np.where(m, po, base)
        print(f"oracle  auc {roc_auc_score(y, pof):.3f} skill {1-ev.brier(pof, y)/bb:.3f}  (matched {m.mean():.2f}; matched-only auc {roc_auc_score(y[m], po[m]):.3f})")
    for n, p in f.p.items():
        extra = f" corr_or {np.corrcoef(p[m], po[m])[0,1]:.2f}" if m.sum() > 2 and p.std() > 0 else ""
        print(f"{n:14s} auc {roc_auc_score(y, p):.3f} skill {1-ev.brier(p, y)/bb:+.4f} ll {ev.log_loss(p, y):.4f} ece {ev.ece(p, y):.3f} mean-rate {p.mean()-y.mean():+.3f}{extra}")
    if shuffle is None:
        p = f.p["knn_diag"]
        cov = np.mean((po[m] >= f.lo[m]) & (po[m] <= f.hi[m])) if m.any() else np.nan
        print(f"interval coverage (planted p) {cov:.3f} width {np.mean(f.hi - f.lo):.3f}")
        for nn in (3, 4, 5, 6, 8, 10, 12, 16):
            lo, hi = se.beta_interval(p, np.full(p.size, nn))
            print(f"  n={nn:2d} coverage {np.mean((po[m] >= lo[m]) & (po[m] <= hi[m])):.3f} width {np.mean(hi-lo):.3f}")
        q = np.quantile(f.mean_dist, [0.25, 0.5, 0.75])
        qi = np.searchsorted(q, f.mean_dist)
        for j in (3, 2, 1, 0):
            s = qi == j
            print(f"  similarity quartile {4-j} (1=least similar) n={s.sum()} skill {1-ev.brier(p[s], y[s])/ev.brier(base[s], y[s]):+.3f} acc {np.mean((p[s]>0.5)==y[s]):.3f}")
        for j in (3, 2, 1, 0):
            pq = f.rank_quartile_p[:, j]
            print(f"  neighbour rank quarter {4-j} (1=least similar) skill {1-ev.brier(pq, y)/bb:+.3f} auc {roc_auc_score(y, pq):.3f}")
        for kd in sorted(set(r.kind)):
            s = r.kind[f.rows] == kd
            print(f"  {kd:8s} n={s.sum()} auc {roc_auc_score(y[s], p[s]):.3f} skill {1-ev.brier(p[s], y[s])/ev.brier(base[s], y[s]):+.3f}")
