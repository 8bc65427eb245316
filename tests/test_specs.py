"""Spec layer: the seed README's examples as written, round trips and hash stability (hypothesis), CLI."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_workflow_training import (CalibrationSpecBuilder, FeatureSpecBuilder, GridSearchSpecBuilder, MLflowSpecBuilder,
                                  ModelSpecBuilder, SpecError, TrainingSpec)
from ml_workflow_training.builders import FeatureStoreSpecBuilder

from seed_readme import workflow_specs

BIN = Path(sys.executable).parent


def test_seed_specifications_snippet():
    feature_specs = FeatureSpecBuilder()\
        .add_numeric_group(["age", "income"], scaler_type="standard")\
        .build()
    model_spec = ModelSpecBuilder()\
        .add_classifier("gb_model", hyperparameters={"n_estimators": 100})\
        .build()[0]
    mlflow_spec = MLflowSpecBuilder()\
        .enable()\
        .set_experiment("my_experiment")\
        .enable_model_registry(stage="Staging")\
        .build()
    group = feature_specs.groups[0]
    assert (group.kind, group.columns, group.scaler_type, group.imputer_strategy) == ("numeric", ("age", "income"), "standard", "mean")
    assert (model_spec.name, model_spec.model_type, model_spec.hyperparameters) == ("gb_model", "gradient_boosting", {"n_estimators": 100})
    assert mlflow_spec.enabled and mlflow_spec.experiment_name == "my_experiment"
    assert mlflow_spec.registry.enabled and mlflow_spec.registry.alias == "staging"
    assert mlflow_spec.tracking_uri == "sqlite:///mlflow.db"


def test_seed_workflow_example_specs():
    feature_specs, model_spec, tuning_spec, calib_spec, mlflow_spec = workflow_specs()
    assert feature_specs.columns == [f"feature_{i}" for i in range(20)]
    assert model_spec.model_type == "gradient_boosting" and model_spec.hyperparameters == {}
    assert tuning_spec.param_grid == {"classifier__n_estimators": [50, 100, 200], "classifier__learning_rate": [0.01, 0.1]}
    assert (tuning_spec.strategy, tuning_spec.cv_folds) == ("grid", 5)
    assert (calib_spec.method, calib_spec.cv_folds) == ("sigmoid", 5)
    assert mlflow_spec.experiment_name == "production_models" and mlflow_spec.tags == {"version": "1.0", "team": "ml-eng"}
    spec = TrainingSpec(features=feature_specs, model=model_spec, tuning=tuning_spec, calibration=calib_spec, mlflow=mlflow_spec)
    assert TrainingSpec.from_yaml(spec.to_yaml()) == spec


def test_seed_feature_store_snippet():
    fs_spec = FeatureStoreSpecBuilder().enable().set_repo_path("feature_repo").set_n_features(20).build()
    assert (fs_spec.enabled, fs_spec.repo_path, fs_spec.n_features) == (True, "feature_repo", 20)


def test_specs_are_frozen():
    spec = ModelSpecBuilder().add_classifier("m").build()[0]
    import pydantic
    with pytest.raises(pydantic.ValidationError, match="Instance is frozen"):
        spec.model_type = "random_forest"


# --- property-based: round trips and hash stability -------------------------------------------
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def training_specs(draw):
    cols = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    split = draw(st.integers(0, len(cols)))
    fb = FeatureSpecBuilder()
    if cols[:split]:
        fb.add_numeric_group(cols[:split], imputer_strategy=draw(st.sampled_from(["mean", "median", None])),
                             scaler_type=draw(st.sampled_from(["standard", "minmax", "robust", "none"])))
    if cols[split:]:
        fb.add_categorical_group(cols[split:], encoder=draw(st.sampled_from(["onehot", "ordinal"])),
                                 min_frequency=draw(st.one_of(st.none(), st.floats(0.001, 0.5))))
    model_type = draw(st.sampled_from(["gradient_boosting", "random_forest", "logistic_regression", "extra_trees"]))
    hp = {"random_forest": {"n_estimators": draw(st.integers(1, 500))}, "extra_trees": {"max_depth": draw(st.integers(1, 20))},
          "gradient_boosting": {"learning_rate": draw(st.floats(0.001, 1.0))}, "logistic_regression": {"C": draw(st.floats(0.01, 100))}}[model_type]
    tuning = None
    if draw(st.booleans()):
        param = {"random_forest": "min_samples_leaf", "extra_trees": "min_samples_leaf", "gradient_boosting": "max_depth",
                 "logistic_regression": "max_iter"}[model_type]
        tuning = GridSearchSpecBuilder().set_param_grid({f"classifier__{param}": draw(st.lists(st.integers(1, 50), min_size=1, max_size=4))})\
            .set_cv_folds(draw(st.integers(2, 10))).set_n_jobs(draw(st.sampled_from([1, 2, -1]))).build()
    calibration = draw(st.sampled_from([None, CalibrationSpecBuilder().set_method("isotonic").set_cv_strategy(3).build(),
                                        CalibrationSpecBuilder().set_cv_strategy(0.25).build()]))
    mlflow = MLflowSpecBuilder().enable(draw(st.booleans())).set_experiment(draw(names))\
        .add_tags(draw(st.dictionaries(names, st.text(max_size=10), max_size=3))).build()
    return TrainingSpec(features=fb.build(), model=ModelSpecBuilder().add_classifier(draw(names), model_type, hp).build()[0],
                        tuning=tuning, calibration=calibration, mlflow=mlflow)


def _shuffled(obj, rnd):
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(obj, list): return [_shuffled(v, rnd) for v in obj]
    return obj


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(training_specs(), st.randoms(use_true_random=False))
def test_round_trips_and_hash_ignore_format_and_key_order(spec, rnd):
    h = spec.spec_hash()
    for again in (TrainingSpec.from_yaml(spec.to_yaml()), TrainingSpec.from_json(spec.to_json()),
                  TrainingSpec.from_dict(spec.to_dict()), TrainingSpec.from_dict(_shuffled(spec.to_dict(), rnd))):
        assert again == spec and again.spec_hash() == h


@settings(max_examples=40, deadline=None)
@given(training_specs())
def test_hash_changes_with_content(spec):
    changed = spec.model_copy(update={"task": "binary" if spec.task != "binary" else "multiclass"})
    assert changed.spec_hash() != spec.spec_hash()


HASH = "import sys; from ml_workflow_training import TrainingSpec; print(TrainingSpec.load(sys.argv[1]).spec_hash())"


def test_hash_is_the_same_in_other_processes(tmp_path):
    spec = TrainingSpec(features=workflow_specs()[0], tuning=workflow_specs()[2])
    yml, jsn = spec.save(tmp_path / "s.yaml"), spec.save(tmp_path / "s.json")
    hashes = {subprocess.run([sys.executable, "-c", HASH, str(p)], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout.strip()
              for p, seed in [(yml, "1"), (jsn, "2"), (yml, "3")]}
    assert hashes == {spec.spec_hash()}


# --- bad input ------------------------------------------------------------------------------------
def test_every_problem_reported_with_its_path():
    with pytest.raises(SpecError) as e:
        TrainingSpec.from_dict({"features": {"groups": [{"kind": "numeric", "columns": ["a"], "scaler_type": "z"}]},
                                "validation": {"cv_folds": 1, "metrics": ["acc"]},
                                "calibration": {"method": "platt"}})
    paths = [p for p, _ in e.value.problems]
    assert paths == ["features.groups.0.scaler_type", "calibration.method", "validation.cv_folds", "validation.metrics.0"]
    text = str(e.value)
    assert "(got 'z')" in text and "(got 'platt')" in text and "(got 1)" in text and "(got 'acc')" in text
    assert "pydantic" not in text and "errors.pydantic.dev" not in text


@pytest.mark.parametrize("data, expected", [
    ({"features": {"groups": [{"kind": "numeric", "columns": ["a"]}]}, "tunning": {}}, "unknown field 'tunning'. Did you mean 'tuning'?"),
    ({"features": {"groups": [{"kind": "numeric", "columns": ["a"], "imputer": "mean"}]}}, "Did you mean 'imputer_strategy'?"),
    ({"features": {"groups": [{"kind": "numeric", "columns": ["a"]}]}, "mlflow": {"registry": {"aliass": "x"}}}, "mlflow.registry.aliass: unknown field 'aliass'. Did you mean 'alias'?"),
    ({"features": {"groups": [{"kind": "numeric", "columns": ["a"]}]}, "model": {"hyperparameters": {"learning_rat": 0.1}}}, "Did you mean 'learning_rate'?"),
    ({"features": {"groups": [{"kind": "numeric", "columns": ["a"]}]}, "validation": {"cv_folds": "five"}}, "validation.cv_folds: Input should be a valid integer"),
])
def test_bad_values_name_field_value_and_allowed(data, expected):
    with pytest.raises(SpecError, match=None) as e:
        TrainingSpec.from_dict(data)
    assert expected in str(e.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("features:\n  groups:\n    - kind: numeric\n      columns: [a, b\nmodel: {}\n")
    with pytest.raises(SpecError, match=r"YAML syntax error at line \d+, column \d+"):
        TrainingSpec.load(p)


def test_validate_cli(tmp_path):
    good = TrainingSpec(features=workflow_specs()[0]).save(tmp_path / "good.yaml")
    out = subprocess.run([BIN / "mlwt-validate-spec", str(good)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"valid {TrainingSpec.load(good).spec_hash()}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  groups: [{kind: numeric, columns: [a], scaler_type: z}]\nmodle: {}\n")
    out = subprocess.run([BIN / "mlwt-validate-spec", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2  # a bad spec
    assert "features.groups.0.scaler_type" in out.stderr and "Did you mean 'model'?" in out.stderr
    assert "Traceback" not in out.stderr
    missing = subprocess.run([BIN / "mlwt-validate-spec", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "spec file not found" in missing.stderr
    schema = subprocess.run([BIN / "mlwt-validate-spec", "x", "--schema"], capture_output=True, text=True, check=True)
    assert json.loads(schema.stdout)["title"] == "TrainingSpec"
