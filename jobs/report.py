"""The report job: a self-contained HTML page of the night's top suspicious segments (run
summary, peak frames, timelines, clips), built from the tables.

    spark-submit jobs/report.py --config conf/demo.yaml [--out report.html] [--top 10]
"""
from vidspark.cli import report_main

if __name__ == "__main__":
    report_main()
