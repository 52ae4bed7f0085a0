"""Which failures are the user's to fix (printed as one line) rather than bugs (tracebacks)."""
from __future__ import annotations


def user_error(exc: BaseException) -> str | None:
    from vidspark.config import ConfigError
    from vidspark.featurize import WeightsError
    from vidspark.labels import LabelsError
    from vidspark.train import TrainingError

    if isinstance(exc, (ConfigError, WeightsError, LabelsError, TrainingError, FileNotFoundError)):
        return str(exc)
    return None
