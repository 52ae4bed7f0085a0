"""Import hand labels, cross-validate the parameter grid by video, log to MLflow, register the best
model and give it the `champion` alias when it beats the current one.

Run with spark-submit (the master comes from spark-submit, never from here):

    spark-submit jobs/train.py --config conf/demo.yaml [--set key=value ...]
"""
from vidspark.cli import JOBS, job_main

if __name__ == "__main__":
    job_main(JOBS["train"][0], __doc__)
