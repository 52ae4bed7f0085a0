"""Import hand labels and fit the logistic regression on labelled frames of the train videos.

Run with spark-submit (the master comes from spark-submit, never from here):

    spark-submit jobs/train.py --config conf/demo.yaml [--set key=value ...]
"""
from vidspark.cli import job_main

if __name__ == "__main__":
    job_main(['labels', 'train'], __doc__)
