"""Configuration: YAML files in ``conf/`` layered on the packaged defaults, plus dotted overrides.

``load_config`` merges, in order:

1. ``vidspark/conf/base.yaml`` (shipped with the package, lists every known key),
2. the environment file given by the user (``conf/demo.yaml``, ``conf/prod.yaml`` ...),
3. ``--set key=value`` overrides (values parsed as YAML scalars, so ``--set train.max_iter=50``
   gives an int).

Unknown keys are rejected with a message that names the key, so a typo never silently falls back
to a default. Local paths are made absolute against the current directory, so the driver and
local executors agree on them. The merged values are validated once and returned as a typed,
immutable ``Config`` (one frozen dataclass per section: ``config.train.folds``); a changed copy
comes from ``config.replace("train.folds=5", ...)``, validated again.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Mapping, Optional

import yaml

from vidspark.errors import VidsparkError


class ConfigError(VidsparkError, ValueError):
    """A configuration problem, reported to the user in one line before any work starts."""


# Keys whose values are free-form mappings (their own sub-keys are not checked).
_OPEN_SECTIONS = {"spark"}
# Keys holding paths that are resolved against the current directory.
_PATH_KEYS = ("storage.root", "input.train_videos", "input.score_videos", "input.labels")
_FORMATS = ("delta", "parquet")


def _base() -> dict:
    text = resources.files("vidspark").joinpath("conf/base.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _merge(base: dict, extra: Mapping, prefix: str = "") -> dict:
    """Merge ``extra`` into ``base`` (in place), rejecting keys that ``base`` does not have."""
    for key, value in (extra or {}).items():
        dotted = f"{prefix}{key}"
        if key not in base:
            if prefix.rstrip(".") in _OPEN_SECTIONS:
                base[key] = value
                continue
            raise ConfigError(f"unknown configuration key '{dotted}'")
        if isinstance(base[key], dict) and dotted not in _OPEN_SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"configuration key '{dotted}' must be a mapping")
            _merge(base[key], value, dotted + ".")
        elif dotted in _OPEN_SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"configuration key '{dotted}' must be a mapping")
            base[key].update(value)
        else:
            base[key] = value
    return base


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed value). Keys of the ``spark`` section are
    Spark's own, given whole: ``spark.sql.shuffle.partitions=4`` sets that Spark setting."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    parts = key.split(".")
    if parts[0] == "spark" and len(parts) > 1:
        parts = ["spark", key]
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc.problem})") from None
    return parts, value


def _nest(parts: list[str], value: Any) -> dict:
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


def get(config: Mapping, dotted: str) -> Any:
    """Read a dotted key (``get(cfg, "train.max_iter")``)."""
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _set(config: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _is_uri(path: str) -> bool:
    return "://" in path or path.startswith("file:")


def local_path(path: str) -> "str | None":
    """The local file-system path of ``path`` (a plain path or a ``file:`` URI), or None when it
    is a remote URI (``hdfs://``, ``s3a://`` ...)."""
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.startswith("file:"):
        return path[len("file:"):]
    return None if "://" in path else path


def _resolve_paths(config: dict) -> None:
    for key in _PATH_KEYS:
        value = get(config, key)
        if value in (None, ""):
            _set(config, key, None)
            continue
        value = os.path.expanduser(str(value))
        if not _is_uri(value):
            value = os.path.abspath(value)
        _set(config, key, value)


def _validate(config: dict) -> None:
    fmt = config["storage"]["format"]
    if fmt not in _FORMATS:
        raise ConfigError(f"storage.format must be one of {', '.join(_FORMATS)}, not '{fmt}'")
    if not config["storage"]["root"]:
        raise ConfigError("storage.root must be set")
    for key in ("featurizer.batch_size", "featurizer.arrow_batch_rows",
                "featurizer.gpu_batch_size", "featurizer.chunk_frames", "train.folds",
                "train.parallelism", "train.precision_at_k", "segments.min_seconds",
                "extract.jpeg_quality", "extract.split_seconds", "extract.chunk_seconds",
                "extract.min_frames", "extract.max_side", "sql_server.port"):
        _positive_int(key, get(config, key))
    if not isinstance(get(config, "sql_server.host"), str) or not get(config, "sql_server.host"):
        raise ConfigError("sql_server.host must be a host name or address")
    if get(config, "extract.jpeg_quality") > 100:
        raise ConfigError("extract.jpeg_quality must be between 1 and 100")
    value = get(config, "extract.seek_margin_seconds")
    if not _number(value) or value < 0:
        raise ConfigError(f"extract.seek_margin_seconds must be a non-negative number, not {value!r}")
    gap = get(config, "segments.max_gap_seconds")
    if not isinstance(gap, int) or isinstance(gap, bool) or gap < 0:
        raise ConfigError(f"segments.max_gap_seconds must be a non-negative integer, not {gap!r}")
    _validate_camera(config)
    _validate_features(config)
    _validate_train(config)
    threads = get(config, "featurizer.threads")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ConfigError(f"featurizer.threads must be a non-negative integer, not {threads!r}")
    if not isinstance(get(config, "featurizer.skip_unchanged"), bool):
        raise ConfigError("featurizer.skip_unchanged must be true or false, not "
                          f"{get(config, 'featurizer.skip_unchanged')!r}")
    grey = get(config, "featurizer.unchanged_grey")
    if not isinstance(grey, int) or isinstance(grey, bool) or not 0 <= grey <= 255:
        raise ConfigError(f"featurizer.unchanged_grey must be an integer from 0 to 255, not {grey!r}")
    if get(config, "featurizer.precision") not in PRECISIONS:
        raise ConfigError(f"featurizer.precision must be one of {', '.join(PRECISIONS)}, "
                          f"not {get(config, 'featurizer.precision')!r}")
    if get(config, "featurizer.backend") not in BACKENDS:
        raise ConfigError(f"featurizer.backend must be one of {', '.join(BACKENDS)}, "
                          f"not {get(config, 'featurizer.backend')!r}")
    weights = get(config, "featurizer.weights")
    if not isinstance(weights, str) or not weights:
        raise ConfigError("featurizer.weights must be 'imagenet', 'random' or a path to a weights file")
    if "spark.master" in config["spark"]:
        raise ConfigError("spark.master must not be set in a config: spark-submit --master chooses it")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(key: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, not {value!r}")


PRECISIONS = ("float32", "bfloat16")
BACKENDS = ("tensorflow", "jax")   # Keras 3 backends the featurizer runs on
GRID_KEYS = ("max_iter", "reg_param", "elastic_net_param", "class_weighting")   # logistic regression
CAMERA_MODES = ("folder", "parent", "regex")
GROUP_BY = ("camera", "video")
#: The feature groups a feature set joins with '+' (see vidspark.stages.feature_sets).
FEATURE_GROUPS = ("appearance", "motion", "change", "anomaly")
#: Model families of the sweep and the grid keys of each (the logistic regression's are train.*).
MODEL_FAMILIES = {
    "logistic_regression": GRID_KEYS,
    "gbt": ("max_iter", "max_depth", "step_size"),
    "random_forest": ("num_trees", "max_depth", "min_instances_per_node"),
}


def camera_of(video: str, config: "Config") -> str:
    """The camera of a video (its name relative to the input folder, without extension), by
    ``input.camera``: ``folder`` the top-level folder (``cam1`` for ``cam1/2026-11-01/0800``),
    ``parent`` the folder that holds it (``cam1/2026-11-01``), ``regex`` the match of
    ``input.camera_regex`` in the name (its group ``camera``, else group 1, else the whole
    match). A video with no folder, or that the regex does not match, is its own camera."""
    mode = config.input.camera
    if mode == "regex":
        m = re.search(config.input.camera_regex, video)
        if m is None:
            return video
        if "camera" in m.re.groupindex:
            return m.group("camera") or video
        return (m.group(1) if m.re.groups else m.group(0)) or video
    if "/" not in video:
        return video
    return video.split("/", 1)[0] if mode == "folder" else video.rsplit("/", 1)[0]


def parse_feature_set(name) -> tuple[str, ...]:
    """The groups of a feature set name such as ``motion+change`` (checked, in the given order)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a feature set must be a name such as 'motion' or 'motion+change', "
                          f"not {name!r}")
    groups = tuple(g.strip() for g in name.split("+"))
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown or len(set(groups)) != len(groups):
        raise ConfigError(f"feature set '{name}': groups are {', '.join(FEATURE_GROUPS)}, joined "
                          "by '+', each at most once")
    return groups


def _validate_camera(config: dict) -> None:
    mode = config["input"]["camera"]
    if mode not in CAMERA_MODES:
        raise ConfigError(f"input.camera must be one of {', '.join(CAMERA_MODES)}, not {mode!r}")
    pattern = config["input"]["camera_regex"]
    if mode == "regex":
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError("input.camera is regex but input.camera_regex is not set")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"input.camera_regex is not a valid regular expression: {exc}") from None


def _validate_features(config: dict) -> None:
    for key in ("extract.motion_width", "features.background_samples",
                "features.anomaly_min_seconds", "features.anomaly_history_seconds"):
        _positive_int(key, get(config, key))
    if get(config, "extract.motion_width") < 32:
        raise ConfigError("extract.motion_width must be at least 32")
    fps = get(config, "extract.motion_fps")
    if not _number(fps) or not 0 < fps <= 60:
        raise ConfigError(f"extract.motion_fps must be a number in (0, 60], not {fps!r}")
    for key in ("features.context_seconds", "features.pca_components"):
        value = get(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{key} must be a non-negative integer, not {value!r}")
METRICS = ("areaUnderPR", "areaUnderROC")
THRESHOLDS = ("max_f1", "recall", "precision")
PROMOTE = ("auto", "always", "never")


def _grid_list(section: dict, key: str, dotted: str) -> list:
    values = section[key] if isinstance(section[key], list) else [section[key]]
    if not values:
        raise ConfigError(f"{dotted} must not be an empty list")
    section[key] = values
    return values


def _validate_grid_value(dotted: str, key: str, value) -> None:
    if key in ("max_iter", "max_depth", "num_trees", "min_instances_per_node"):
        _positive_int(dotted, value)
        if key == "max_depth" and value > 30:
            raise ConfigError(f"{dotted} must be at most 30 (Spark's limit), not {value!r}")
    elif key == "class_weighting":
        if not isinstance(value, bool):
            raise ConfigError(f"{dotted} must be true or false, not {value!r}")
    elif key == "step_size":
        if not _number(value) or not 0 < value <= 1:
            raise ConfigError(f"{dotted} must be in (0, 1], not {value!r}")
    elif not _number(value) or value < 0 or (key == "elastic_net_param" and value > 1):
        bound = "between 0 and 1" if key == "elastic_net_param" else "a non-negative number"
        raise ConfigError(f"{dotted} must be {bound}, not {value!r}")


def _validate_train(config: dict) -> None:
    train = config["train"]
    if train["folds"] < 2:
        raise ConfigError("train.folds must be at least 2")
    if train["group_by"] not in GROUP_BY:
        raise ConfigError(f"train.group_by must be one of {', '.join(GROUP_BY)}, "
                          f"not {train['group_by']!r}")
    for name in _grid_list(train, "feature_sets", "train.feature_sets"):
        parse_feature_set(name)
    if len(set(train["feature_sets"])) != len(train["feature_sets"]):
        raise ConfigError("train.feature_sets lists a feature set twice")
    models = _grid_list(train, "models", "train.models")
    for model in models:
        if model not in MODEL_FAMILIES:
            raise ConfigError(f"train.models: unknown model family {model!r} (known: "
                              f"{', '.join(MODEL_FAMILIES)})")
    for family, keys in MODEL_FAMILIES.items():
        section = train if family == "logistic_regression" else train[family]
        prefix = "train." if family == "logistic_regression" else f"train.{family}."
        for key in keys:
            for value in _grid_list(section, key, prefix + key):
                _validate_grid_value(prefix + key, key, value)
    if train["metric"] not in METRICS:
        raise ConfigError(f"train.metric must be one of {', '.join(METRICS)}, not {train['metric']!r}")
    if train["threshold"] not in THRESHOLDS:
        raise ConfigError(f"train.threshold must be one of {', '.join(THRESHOLDS)}, "
                          f"not {train['threshold']!r}")
    if train["promote"] not in PROMOTE:
        raise ConfigError(f"train.promote must be one of {', '.join(PROMOTE)}, not {train['promote']!r}")
    target = train["threshold_target"]
    if not _number(target) or not 0 < target <= 1:
        raise ConfigError(f"train.threshold_target must be in (0, 1], not {target!r}")
    if not isinstance(train["seed"], int) or isinstance(train["seed"], bool):
        raise ConfigError(f"train.seed must be an integer, not {train['seed']!r}")
    for key in ("experiment", "model_name"):
        if not isinstance(config["tracking"][key], str) or not config["tracking"][key].strip():
            raise ConfigError(f"tracking.{key} must be a non-empty string")


@dataclass(frozen=True)
class StorageConfig:
    root: str
    format: str


@dataclass(frozen=True)
class InputConfig:
    train_videos: Optional[str]
    score_videos: Optional[str]
    labels: Optional[str]
    extensions: tuple
    camera: str
    camera_regex: Optional[str]


@dataclass(frozen=True)
class ExtractConfig:
    jpeg_quality: int
    max_side: int
    split_seconds: int
    chunk_seconds: int
    seek_margin_seconds: float
    min_frames: int
    motion_width: int
    motion_fps: float


@dataclass(frozen=True)
class FeaturizerConfig:
    weights: str
    batch_size: int
    arrow_batch_rows: int
    random_seed: int
    precision: str
    backend: str
    threads: int
    gpu_batch_size: int
    chunk_frames: int
    skip_unchanged: bool
    unchanged_grey: int


@dataclass(frozen=True)
class FeaturesConfig:
    context_seconds: int
    pca_components: int
    background_samples: int
    anomaly_min_seconds: int
    anomaly_history_seconds: int


@dataclass(frozen=True)
class GbtGrid:
    max_iter: tuple
    max_depth: tuple
    step_size: tuple


@dataclass(frozen=True)
class RandomForestGrid:
    num_trees: tuple
    max_depth: tuple
    min_instances_per_node: tuple


@dataclass(frozen=True)
class TrainConfig:
    group_by: str
    feature_sets: tuple
    models: tuple
    max_iter: tuple            # the logistic regression's grid
    reg_param: tuple
    elastic_net_param: tuple
    class_weighting: tuple
    gbt: GbtGrid
    random_forest: RandomForestGrid
    folds: int
    parallelism: int
    seed: int
    metric: str
    threshold: str
    threshold_target: float
    precision_at_k: int
    promote: str

    def grid(self, family: str) -> dict:
        """The grid lists of a model family (``MODEL_FAMILIES``), by key."""
        section = self if family == "logistic_regression" else getattr(self, family)
        return {key: getattr(section, key) for key in MODEL_FAMILIES[family]}


@dataclass(frozen=True)
class SegmentsConfig:
    max_gap_seconds: int
    min_seconds: int


@dataclass(frozen=True)
class TrackingConfig:
    uri: Optional[str]
    experiment: str
    model_name: str


@dataclass(frozen=True)
class SqlServerConfig:
    host: str
    port: int


@dataclass(frozen=True)
class Config:
    """A validated configuration (what ``load_config`` returns). ``spark`` holds Spark's own
    settings by their full names."""
    storage: StorageConfig
    input: InputConfig
    extract: ExtractConfig
    featurizer: FeaturizerConfig
    features: FeaturesConfig
    train: TrainConfig
    segments: SegmentsConfig
    tracking: TrackingConfig
    sql_server: SqlServerConfig
    spark: Mapping = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The plain nested mapping (lists for grids), e.g. to record with a model."""
        return _plain(self)

    def replace(self, *overrides: str) -> "Config":
        """A copy with ``key=value`` overrides applied on top, validated again."""
        return _from_dict(_apply(self.to_dict(), overrides))

    def with_spark(self, settings: Mapping) -> "Config":
        """A copy with extra Spark settings (``settings`` win over this config's)."""
        return dataclasses.replace(self, spark={**self.spark, **settings})


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _frozen(value):
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _build(cls, values: Mapping):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            value = _build(kind, value)
        elif f.name == "spark":
            value = dict(value)
        else:
            value = _frozen(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _from_dict(config: dict) -> Config:
    _resolve_paths(config)
    _validate(config)
    return _build(Config, config)


def _apply(config: dict, overrides: Iterable[str]) -> dict:
    for item in overrides:
        parts, value = parse_override(item)
        _merge(config, _nest(parts, value))
    weights = get(config, "featurizer.weights")
    if isinstance(weights, str) and weights not in ("imagenet", "random") and not _is_uri(weights):
        _set(config, "featurizer.weights", os.path.abspath(os.path.expanduser(weights)))
    return config


def load_config(path: str | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load the packaged defaults, the environment file ``path`` and ``key=value`` overrides."""
    config = _base()
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as fh:
            try:
                env = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(env, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        _merge(config, env)
    return _from_dict(_apply(config, overrides))
