"""The seed README's examples, as written (imports adjusted), shared by the spec and workflow tests."""
from ml_workflow_training import (CalibrationSpecBuilder, FeatureSpecBuilder, GridSearchSpecBuilder, MLflowSpecBuilder,
                                  ModelSpecBuilder, load_data, run_ml_workflow)


def workflow_specs():
    "Steps 2-6 of the seed README's 'Workflow Example'."
    # 2. Configure features
    feature_specs = FeatureSpecBuilder()\
        .add_numeric_group(
            [f"feature_{i}" for i in range(20)],
            imputer_strategy="mean",
            scaler_type="standard"
        ).build()

    # 3. Configure model
    model_spec = ModelSpecBuilder()\
        .add_classifier("gradient_boost_v1")\
        .build()[0]

    # 4. Configure hyperparameter tuning
    tuning_spec = GridSearchSpecBuilder()\
        .set_param_grid({
            "classifier__n_estimators": [50, 100, 200],
            "classifier__learning_rate": [0.01, 0.1]
        })\
        .set_cv_folds(5)\
        .build()

    # 5. Configure calibration
    calib_spec = CalibrationSpecBuilder()\
        .set_method("sigmoid")\
        .set_cv_strategy(5)\
        .build()

    # 6. Configure MLflow
    mlflow_spec = MLflowSpecBuilder()\
        .enable()\
        .set_experiment("production_models")\
        .enable_model_registry(stage="Staging")\
        .add_tags({"version": "1.0", "team": "ml-eng"})\
        .build()

    return feature_specs, model_spec, tuning_spec, calib_spec, mlflow_spec


def workflow_example():
    "The whole 'Workflow Example': load, steps 2-6, run, print; returns X, y and the results."
    # 1. Load data
    X, y = load_data("classification_data")

    feature_specs, model_spec, tuning_spec, calib_spec, mlflow_spec = workflow_specs()  # steps 2-6

    # 7. Run complete workflow
    results = run_ml_workflow(
        feature_specs=feature_specs,
        model_spec=model_spec,
        X=X, y=y,
        validation_strategy="cross_validation",
        tuning_spec=tuning_spec,
        calibration_spec=calib_spec,
        mlflow_spec=mlflow_spec
    )

    # 8. Results
    print(f"CV Accuracy: {results['cv_score']:.3f} ± {results['cv_std']:.3f}")
    print(f"Best params: {results['tuning_summary']['best_params']}")
    print(f"MLflow Run: {results['mlflow_run_id']}")
    return X, y, results
