"""Pure media code, no Spark: ``video`` (probing files, one frame per whole second by decoded
timestamps), ``motion`` (per-second motion features from the decoded frames) and ``clips``
(thumbnails and review clips). The extract stage calls these inside its tasks."""
