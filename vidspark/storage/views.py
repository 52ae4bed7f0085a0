"""SQL views over the tables, created with the tables in every session (see README "SQL"):
plain SQL over table names, no Spark code, so the storage layer registers them without importing
any stage."""

VIEWS = {
    # segments of the latest scoring run (the night's new or re-scored videos: one refresh
    # writes one computed_at), best first
    "segments_tonight": """
        SELECT * FROM segments
        WHERE computed_at = (SELECT max(computed_at) FROM segments)
        ORDER BY peak_prob DESC, video, start_second""",
    # segments still to look at: best first, with their latest verdict; a segment whose latest
    # verdict is `rejected` is hidden (its id names the model version, so a new version's
    # segments of the same moment are shown again)
    "segments_to_review": """
        SELECT s.*, r.verdict, r.reviewer, r.reviewed_at
        FROM segments s
        LEFT JOIN (SELECT segment_id, verdict, reviewer, reviewed_at FROM (
                     SELECT *, row_number() OVER (PARTITION BY segment_id
                                                  ORDER BY reviewed_at DESC, review_id) AS n
                     FROM reviews WHERE segment_id IS NOT NULL) WHERE n = 1) r
          ON s.segment_id = r.segment_id
        WHERE r.verdict IS NULL OR r.verdict <> 'rejected'
        ORDER BY s.peak_prob DESC, s.video, s.start_second""",
    # per video: scored and flagged seconds, segments, peak
    "video_suspicious_seconds": """
        SELECT p.video, count(*) AS scored_seconds, sum(p.prediction) AS flagged_seconds,
               round(avg(p.prediction), 4) AS flagged_share, max(p.prob_suspicious) AS peak_prob,
               coalesce(max(s.segments), 0) AS segments
        FROM predictions p
        LEFT JOIN (SELECT video, count(*) AS segments FROM segments GROUP BY video) s
          ON p.video = s.video
        GROUP BY p.video""",
    # per camera (videos.camera, see input.camera) and day the videos arrived
    "camera_daily_counts": """
        SELECT v.camera AS camera,
               to_date(v.processed_at) AS day,
               count(DISTINCT v.video) AS videos,
               count(s.segment_id) AS segments,
               coalesce(sum(s.flagged_seconds), 0) AS flagged_seconds
        FROM videos v LEFT JOIN segments s ON v.video = s.video
        WHERE v.status = 'ok' AND v.role LIKE '%score%'
        GROUP BY 1, 2""",
    # the label-free ranking: per camera, its seconds by how much more activity they show than is
    # usual for that camera; `camera_labelled` says whether any labelled second comes from it
    "camera_anomalies": """
        SELECT p.camera, p.video, p.second, p.frame_name, p.anomaly_score,
               rank() OVER (PARTITION BY p.camera ORDER BY p.anomaly_score DESC NULLS LAST)
                 AS camera_rank,
               p.prob_suspicious, p.prediction, p.model_id,
               coalesce(l.labelled, false) AS camera_labelled
        FROM predictions p
        LEFT JOIN (SELECT DISTINCT v.camera, true AS labelled
                   FROM labels lb JOIN videos v ON lb.video = v.video) l
          ON p.camera = l.camera
        WHERE p.anomaly_score IS NOT NULL""",
}
