"""A registry you can trust: the alias moves only to a version that beats its holder on the same data and folds, a model
type keeps its own lineage, every version carries its record and model card, and a sweep registers only its best run."""
import subprocess

import mlflow
import pytest
import yaml

from conftest import BIN
from ml_workflow_training import tracking
from ml_workflow_training import (CalibrationSpecBuilder, FeatureSpecBuilder, MLflowSpecBuilder, ModelSpec, ModelSpecBuilder,
                                  TrainingSpec, run_training)
from ml_workflow_training.specs import DataSpec, ValidationSpec

FEATURES = [f"feature_{i}" for i in range(20)]


def spec(uri: str, **model) -> TrainingSpec:
    return TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpec(name="champ", **({"hyperparameters": {"n_estimators": 20}} | model)),
                        calibration=CalibrationSpecBuilder().set_cv_strategy(3).build(), validation=ValidationSpec(cv_folds=3),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment("registry")
                        .enable_model_registry(stage="Staging").build())


def holder(client, name="champ", alias="staging") -> str:
    return str(client.get_model_version_by_alias(name, alias).version)


@pytest.mark.parametrize("apart", ["never", "always"])
def test_the_alias_moves_only_to_a_better_version_and_each_version_carries_its_record(workdir, monkeypatch, apart):
    "Recorded here, or by a process of its own (which asks this one to score an incumbent on other data)."
    monkeypatch.setattr(tracking, "RUN_APART", apart)
    uri = f"sqlite:///{workdir}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    first = run_training(spec(uri), verbose=False)
    recorded_by = {"never": "the training process", "always": "a process of its own"}[apart]
    assert client.get_run(first.mlflow_run_id).data.tags[tracking.RECORDED_BY] == recorded_by
    assert first.registered and "first registration: no version held the alias" in first.registration and holder(client) == "1"

    worse = run_training(spec(uri, hyperparameters={"n_estimators": 2, "max_depth": 1}), verbose=False)
    assert worse.cv_score < first.cv_score
    assert worse.model_version == "2" and holder(client) == "1"  # registered, but the alias stayed
    assert "but @staging stays on version 1" in worse.registration and "recorded at its registration, same data and folds" in worse.registration
    v2 = client.get_model_version("champ", "2")
    assert (v2.tags["challenge.won"], v2.tags["challenge.incumbent_version"]) == ("false", "1")
    assert client.get_run(worse.mlflow_run_id).data.tags["registry.alias_moved"] == "false"

    better = run_training(spec(uri, hyperparameters={"n_estimators": 60}), verbose=False)
    assert better.cv_score > first.cv_score and holder(client) == "3" and "as @staging" in better.registration
    v3 = client.get_model_version("champ", "3")
    assert v3.tags["run_id"] == better.mlflow_run_id and v3.tags["spec_hash"] == better.spec.spec_hash()
    assert v3.tags["data_fingerprint"] == better.data_fingerprint["content_hash"] and v3.tags["model_type"] == "gradient_boosting"
    assert float(v3.tags["score.accuracy"]) == pytest.approx(better.cv_score, abs=1e-5)
    assert "±" in v3.tags["metric.cv_accuracy"] and "calibration.brier_after" in v3.tags
    assert v3.description.startswith("# champ: gradient_boosting") and "| accuracy |" in v3.description and "**Limits.**" in v3.description
    card = mlflow.artifacts.load_text(f"runs:/{better.mlflow_run_id}/model_card.md")
    assert card == v3.description

    margin = spec(uri, hyperparameters={"n_estimators": 60})  # the same model again: equal, so not better by a margin
    margin = margin.model_copy(update={"mlflow": margin.mlflow.model_copy(update={"registry": margin.mlflow.registry.model_copy(update={"margin": 0.01})})})
    same = run_training(margin, verbose=False)
    assert holder(client) == "3" and "equal by 0.0000, margin 0.01" in same.registration

    # other data (fewer rows): the scores recorded at registration do not compare; the incumbent is cross-validated again
    fewer = spec(uri, hyperparameters={"n_estimators": 60}).model_copy(update={"data": DataSpec(limit=700)})
    other = run_training(fewer, verbose=False)
    assert "cross-validated now on this run's folds" in other.registration, other.registration


def test_another_model_type_gets_its_own_lineage_unless_the_spec_names_it(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    run_training(spec(uri), verbose=False)
    hgb = run_training(spec(uri, model_type="hist_gradient_boosting", hyperparameters={"max_iter": 20}), verbose=False)
    assert "registered champ_hist_gradient_boosting version 1" in hgb.registration and "'champ' holds gradient_boosting models" in hgb.registration
    assert holder(client) == "1" and holder(client, "champ_hist_gradient_boosting") == "1"
    named = spec(uri, model_type="hist_gradient_boosting", hyperparameters={"max_iter": 20})
    named = named.model_copy(update={"mlflow": named.mlflow.model_copy(update={"registry": named.mlflow.registry.model_copy(update={"model_name": "champ"})})})
    joined = run_training(named, verbose=False)
    assert "registered champ version 2" in joined.registration  # named in the spec: the user's call


def test_a_sweep_registers_only_its_best_run_after_all_finished(workdir):
    (workdir / "sweep.yaml").write_text(yaml.safe_dump({"base": {"tuning": False, "calibration": False, "experiment": "sw"},
                                                        "runs": [{"n_estimators": 3, "max_depth": 1}, {"n_estimators": 40}]}))
    r = subprocess.run([str(BIN / "mlwt-sweep"), "sweep.yaml"], cwd=workdir, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    versions = client.search_model_versions("name = 'gradient_boost_v1'")
    assert len(versions) == 1  # one registration for the whole sweep
    runs = {run.info.run_id: run for run in client.search_runs([client.get_experiment_by_name("sw").experiment_id])}
    best = runs[versions[0].tags["run_id"]]
    assert best.data.params["model.hyperparameters.n_estimators"] == "40"
    assert holder(client, "gradient_boost_v1") == "1" and "first registration" in best.data.tags["registration"]
    assert "registered gradient_boost_v1 version 1" in r.stdout


def test_through_plain_papermill_a_worse_run_registers_and_the_alias_stays(workdir):
    "Notebook runs take the same gate: papermill alone, no package command around it; the report says what happened."
    import nbformat
    from ml_workflow_training.notebook import template_path

    def papermill(out: str, *params: str) -> str:
        args = [str(BIN / "papermill"), str(template_path()), f"data/runs/{out}.ipynb", "-p", "tuning", "false",
                "-p", "calibration", "false", "-p", "experiment", "nb", *params]
        r = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        outputs = [o for c in nbformat.read(str(workdir / f"data/runs/{out}.ipynb"), as_version=4).cells for o in c.get("outputs", [])]
        return "\n".join(str(o.get("data", {}).get("text/markdown", "")) + o.get("text", "") for o in outputs)

    first = papermill("first", "-p", "n_estimators", "40")
    worse = papermill("worse", "-p", "n_estimators", "3", "-p", "max_depth", "1")
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    assert "first registration" in first and holder(client, "gradient_boost_v1") == "1"
    v2 = client.get_model_version("gradient_boost_v1", "2")
    assert (v2.tags["challenge.won"], v2.tags["challenge.incumbent_version"]) == ("false", "1")
    assert "but @staging stays on version 1" in worse, worse[-3000:]
