"""vidspark: find suspicious behaviour in CCTV video with PySpark, Delta Lake and InceptionV3."""
from setuptools import find_packages, setup

# pyspark and delta-spark must move together: delta-spark declares no upper bound on pyspark,
# so without the pin pip would happily pair it with an incompatible Spark.
INSTALL_REQUIRES = [
    "pyspark==4.1.1",  # 4.1.2+ removed a class (IgnoreCachedData) that Delta 4.1.0 calls
    "delta-spark==4.1.0",
    "tensorflow-cpu==2.21.0; platform_machine == 'x86_64'",
    "tensorflow==2.21.0; platform_machine != 'x86_64'",
    "keras>=3.10,<4",
    "opencv-python-headless>=4.10,<5",
    # decoding: FFmpeg through PyAV (its wheel carries FFmpeg): frames stay in the decoder's YUV
    # planes until asked for, so motion reads the luma plane and only the kept frame is converted
    "av>=14,<19",
    "numpy>=1.26,<3",
    "pandas>=2.2,<3",
    "pyarrow>=15,<23",  # the newest line released before pyspark 4.1.1; tested
    "pyyaml>=6",
    # tracking and registry with the embedded SQLite store (the full package: mlflow-skinny has
    # no SQL store and no `mlflow ui`). Held below 3.18: mlflow 3.18.0 requires
    # mlflow-skinny==3.18.0, which the package index did not serve when this was pinned.
    "mlflow>=3.17,<3.18",
    "matplotlib>=3.8,<4",  # validation plots (PR, ROC, score histograms), review timelines
    # clips for reviewers: H.264 MP4 through the static ffmpeg binary this wheel ships
    "imageio-ffmpeg>=0.5,<0.9",
    # `vidspark sql` talks to a running `vidspark sql-server` (HiveServer2 protocol, pure Python)
    "PyHive[hive_pure_sasl]>=0.7,<0.8",
]

# The review notebook (`jupyter nbconvert --execute notebooks/review_flagged_clips.ipynb`).
NOTEBOOK_REQUIRES = ["nbconvert>=7.16,<8", "nbclient>=0.10,<0.12", "ipykernel>=6.29,<8"]

setup(
    name="vidspark",
    version="0.1.0",
    description="Rank suspicious moments in CCTV video with Spark, Delta Lake and InceptionV3 features",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # the library, and beside it the demo data generator and the measurements (bench, eval)
    packages=find_packages(include=["vidspark", "vidspark.*", "vidspark_demo", "vidspark_bench"]),
    package_data={"vidspark": ["conf/*.yaml", "jvm/*.java"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "notebook": NOTEBOOK_REQUIRES,
        # make bench: process-tree memory of the driver and Python workers (PyAV, a dependency,
        # writes the generated 1080p/720p H.264 camera footage with its wheel's libx264)
        "bench": ["psutil>=5.9,<8"],
        # featurizer.backend: jax. Keras 3 on JAX runs the same graph and weights; [gpu] brings
        # JAX with its CUDA 12 libraries (GPU machines without a matching TensorFlow build).
        "jax": ["jax[cpu]>=0.10,<0.11"],
        "gpu": ["jax[cuda12]>=0.10,<0.11"],
        # deltalake: delta-rs, an independent Delta reader (no Spark) that every table must suit
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.8,<4", "psutil>=5.9,<8",
                 "deltalake>=1.1,<2", "jax[cpu]>=0.10,<0.11", *NOTEBOOK_REQUIRES],
    },
    entry_points={
        "console_scripts": [
            # one command: `vidspark COMMAND ...` (nightly, sql, sql-server, review, ...)
            "vidspark=vidspark.cli:main",
        ]
    },
)
