"""Compute InceptionV3 features for frames that have none under the configured weights.

Run with spark-submit (the master comes from spark-submit, never from here):

    spark-submit jobs/featurize.py --config conf/demo.yaml [--set key=value ...]
"""
from vidspark.cli import JOBS, job_main

if __name__ == "__main__":
    job_main(JOBS["featurize"][0], __doc__)
