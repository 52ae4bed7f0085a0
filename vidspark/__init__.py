"""vidspark: rank suspicious moments in CCTV video with PySpark, Delta Lake and InceptionV3."""
__version__ = "0.1.0"
