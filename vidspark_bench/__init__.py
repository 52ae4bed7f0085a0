"""Measurements of vidspark, beside the library: ``bench`` (speed and memory, ``make bench``) and
``evaluate`` (camera-grouped detection quality, ``make eval``). Within ``vidspark`` only the
command's dispatcher (``vidspark.cli``) imports this package."""
