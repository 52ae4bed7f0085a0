"""MLflow: where runs and models are tracked, and the registered model's champion.

The tracking URI is ``tracking.uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else an
embedded SQLite store at ``<storage.root>/mlflow/mlflow.db`` whose artifacts (plots, the Spark
model) go to ``<storage.root>/mlflow/artifacts``. The model registry lives in the same store.
"""
from __future__ import annotations

import logging
import os

from vidspark.config import Config, ConfigError, local_path

log = logging.getLogger(__name__)

CHAMPION = "champion"
# Out-of-fold validation predictions of a training run (video, second, label, fold, prob, source:
# where the label came from).
VALIDATION_FILE = "validation/predictions.csv"


def tracking_uri(config: Config) -> str:
    uri = config.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = local_path(config.storage.root)
    if root is None:
        raise ConfigError("tracking.uri must be set when storage.root is not a local folder "
                          "(the embedded MLflow store is a SQLite file under storage.root)")
    return f"sqlite:///{os.path.join(root, 'mlflow', 'mlflow.db')}"


def registry_stamp(config: Config) -> str | None:
    """The embedded store's database file as it is now (size and modification time), so a stage
    that only reads the registry can tell, without MLflow, that nothing in it changed since a
    run; None for a tracking server (ask it)."""
    uri = tracking_uri(config)
    if not uri.startswith("sqlite:///"):
        return None
    try:
        st = os.stat(uri[len("sqlite:///"):])
    except OSError:
        return None
    return f"sqlite:{st.st_size}:{st.st_mtime_ns}"


def _embedded_artifacts(config: Config) -> str | None:
    """The artifact folder of the embedded store (None for a server, which chooses its own)."""
    uri = tracking_uri(config)
    if not uri.startswith("sqlite:"):
        return None
    return "file://" + os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "artifacts")


def _store_uri(config: Config) -> str:
    """The tracking URI, with the embedded store's folder made and MLflow's INFO lines off."""
    # MLflow prints its own INFO lines (database migrations, "Created version") through logging.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///"):]), exist_ok=True)
    return uri


def setup(config: Config) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow

    uri = _store_uri(config)
    # mlflow.set_tracking_uri/set_registry_uri also export MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI;
    # put the user's values back, so a later config in this process is not sent to this store.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    name = config.tracking.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=_embedded_artifacts(config))
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def client(config: Config):
    """A client of the configured store and its registry (no experiment needed: no lookup)."""
    from mlflow import MlflowClient

    uri = _store_uri(config)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_name(config: Config) -> str:
    return config.tracking.model_name


def champion(config: Config):
    """The registered model version holding the ``champion`` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client(config).get_model_version_by_alias(model_name(config), CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def versions(config: Config) -> list:
    """Every registered version of the model (newest first)."""
    c = client(config)
    found = c.search_model_versions(f"name = '{model_name(config)}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def promote(config: Config, version: int | str) -> None:
    """Give ``version`` the champion alias (what a person does by hand to overrule training)."""
    client(config).set_registered_model_alias(model_name(config), CHAMPION, str(version))


_MODELS: dict = {}


def load_spark_model(config: Config, version):
    """The Spark ML model of a registered version (a ``PipelineModel``), loaded once per Spark
    application (a registered version never changes)."""
    import mlflow.spark
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    key = (session.sparkContext.applicationId if session else None, tracking_uri(config),
           model_name(config), str(version))
    if key not in _MODELS:
        setup(config)
        _MODELS[key] = mlflow.spark.load_model(f"models:/{model_name(config)}/{version}")
    return _MODELS[key]


def validation(config: Config, version: int | str | None = None):
    """(out-of-fold validation predictions, threshold) of a registered version (the champion by
    default): the data behind the run's PR/ROC/histogram plots, for notebooks. Draw them with
    ``vidspark.stages.evaluation.figures(frame, threshold)``."""
    setup(config)
    v = champion(config) if version is None else client(config).get_model_version(
        model_name(config), str(version))
    if v is None:
        raise LookupError(f"registered model '{model_name(config)}' has no champion")
    return validation_frame(v), float((v.tags or {}).get("threshold", "nan"))


def validation_frame(version):
    """The out-of-fold validation predictions logged by the run of a registered ``version``
    (after ``setup``)."""
    import mlflow
    import pandas as pd

    path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=VALIDATION_FILE)
    return pd.read_csv(path)
