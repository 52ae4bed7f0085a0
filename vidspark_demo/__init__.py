"""The built-in demo data set: synthetic CCTV clips (MPEG-1) of people walking, browsing, meeting,
fighting, falling and leaving bags, with per-second labels; and the small video helpers the tests
use (frame-index videos). Beside the library, not part of it: ``vidspark demo-data`` (or
``python -m vidspark_demo``) writes the data set; within ``vidspark`` only the command's
dispatcher (``vidspark.cli``) imports this package.
"""
from vidspark_demo.data import (DATASET_VERSION, ClipSpec, clip_frames, decode_index_frame,
                                encode_index_frame, generate_demo_dataset, main,
                                plan_demo_dataset, write_index_video, write_video)

__all__ = ["DATASET_VERSION", "ClipSpec", "clip_frames", "decode_index_frame",
           "encode_index_frame", "generate_demo_dataset", "main", "plan_demo_dataset",
           "write_index_video", "write_video"]
