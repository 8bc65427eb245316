"""What a permutation-importance budget buys: its cost beside the fit, and how far its table is from a far larger one.

The model: `HistGradientBoostingClassifier` (defaults, one OpenMP thread, as the floors are) fitted on 80%
of a generated table (stratified, seeded); the importance runs as a run's evaluation runs it, on the
10,000-row stratified sample of the 20% held out, through `feature_importance` with a budget in cells.
The reference: every column permuted five times over a separate 50,000-row sample of the held-out rows
(no budget). For each budget, three seeds: the importance's CPU seconds as a share of the fit's, and
the Spearman correlation of its importances with the reference's (the lowest of the seeds).
Goals (issue 10's "evaluation under a tenth of the fit"): the budget a run uses at this size costs at
most 5% of the fit's CPU and keeps Spearman >= 0.95. The other budgets are shown beside it.
Usage: python benchmarks/importance_budget.py [--rows N] [--db PATH] (default 1,000,000 generated rows)
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, report


def main(rows: int, db: str | None) -> None:
    from scipy.stats import spearmanr
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from ml_workflow_training import generate_database, load_data
    from ml_workflow_training.core import take_rows
    from ml_workflow_training.evaluation import evaluation_positions, feature_importance, permutation_budget
    if db is None:
        db = str(Path(tempfile.mkdtemp()) / "big.db")
        generate_database(db, n_samples=rows, missing_rate=0.05)
    X, y = load_data(db=db)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    cpu = time.process_time()
    model = HistGradientBoostingClassifier(random_state=42).fit(X_train, y_train)
    fit_cpu = time.process_time() - cpu
    def sample(n: int, seed: int):
        at = evaluation_positions(y_test, n, seed)
        return take_rows(X_test, at), take_rows(y_test, at)
    reference = feature_importance(model, *sample(50_000, 7), random_state=7).set_index("feature")["importance"]
    X_s, y_s = sample(10_000, 0)
    ours = permutation_budget(*X_train.shape)
    for budget in sorted({ours, 500_000, 1_000_000, 1_600_000, 2_500_000, 4_000_000}):
        costs, agreements = [], []
        for seed in range(3):
            cpu = time.process_time()
            table = feature_importance(model, X_s, y_s, random_state=seed, budget_cells=budget)
            costs.append(time.process_time() - cpu)
            agreements.append(spearmanr(table.set_index("feature")["importance"].reindex(reference.index), reference).statistic)
        case = f"{len(X_train):,} training rows, budget {budget:,} cells ({table['source'].iloc[0]})" + (" (the run's)" if budget == ours else "")
        report("importance_budget", f"{case}: CPU / the fit's", max(costs), fit_cpu, 0.05, counts=budget == ours, unit="CPU-s")
        report("importance_budget", f"{case}: Spearman with the reference (lowest of 3 seeds)", min(agreements), 1.0, 0.95,
               measure="spearman", higher_is_better=True, value=min(agreements), unit="rho", counts=budget == ours)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--db", help="an existing generated table's database (default: generate one)")
    a = p.parse_args()
    main(a.rows, a.db)
    finish()
