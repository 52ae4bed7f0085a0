"""Extract one frame per second from new or changed videos into the frames table.

Run with spark-submit (the master comes from spark-submit, never from here):

    spark-submit jobs/extract_frames.py --config conf/demo.yaml [--set key=value ...]
"""
from vidspark.cli import JOBS, job_main

if __name__ == "__main__":
    job_main(JOBS["extract"][0], __doc__)
