"""The pipeline's stages, each ``run(spark, config) -> report`` (see ``vidspark.pipeline``):
``extract``, ``labels``, ``featurize``, ``train``, ``score`` (with ``segments``), and the pieces
more than one stage uses: ``feature_sets`` (the feature groups a model reads) and ``evaluation``
(metrics and thresholds). Stages use the storage layer and the media code, never each other's
internals."""
