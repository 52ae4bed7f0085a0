"""Validation figures computed from (label, probability) pairs: curves, areas, the operating
threshold, precision at k, the confusion matrix, and the PR/ROC/histogram plots.

Inputs are the out-of-fold predictions of grouped cross-validation, collected to the driver: one
row per labelled second, so they are small. The areas follow Spark's ``BinaryClassificationMetrics``
(one curve point per distinct score, trapezoidal area, the PR curve starting at recall 0 with the
first point's precision), so ``area_under_pr`` equals ``BinaryClassificationEvaluator``'s
``areaUnderPR`` on the same data.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

THRESHOLD_STRATEGIES = ("max_f1", "recall", "precision")


def _cumulative(labels, probs):
    """Cumulative true and false positives at each distinct score, highest score first."""
    labels = np.asarray(labels, dtype=float)
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="stable")
    labels, probs = labels[order], probs[order]
    # the last index of each run of equal scores: predicting "positive at score >= s" takes all of them
    last = np.r_[np.flatnonzero(np.diff(probs) != 0), len(probs) - 1] if len(probs) else np.array([], int)
    tp = np.cumsum(labels)[last]
    fp = np.cumsum(1 - labels)[last]
    return probs[last], tp, fp, labels.sum(), len(labels) - labels.sum()


def pr_curve(labels, probs):
    """(thresholds, recall, precision): a point per distinct score, highest first."""
    scores, tp, fp, pos, _ = _cumulative(labels, probs)
    recall = tp / pos if pos else np.zeros_like(tp)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return scores, recall, precision


def roc_curve(labels, probs):
    """(fpr, tpr) from (0, 0) to (1, 1)."""
    _, tp, fp, pos, neg = _cumulative(labels, probs)
    tpr = tp / pos if pos else np.zeros_like(tp)
    fpr = fp / neg if neg else np.zeros_like(fp)
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, tpr, 1.0]


def _trapezoid(x, y) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def area_under_pr(labels, probs) -> float:
    _, recall, precision = pr_curve(labels, probs)
    if not len(recall):
        return float("nan")
    return _trapezoid(np.r_[0.0, recall], np.r_[precision[0], precision])


def area_under_roc(labels, probs) -> float:
    fpr, tpr = roc_curve(labels, probs)
    return _trapezoid(fpr, tpr)


def area(metric: str, labels, probs) -> float:
    """``areaUnderPR`` or ``areaUnderROC`` (Spark's evaluator names)."""
    return {"areaUnderPR": area_under_pr, "areaUnderROC": area_under_roc}[metric](labels, probs)


def average_precision(labels, probs) -> float:
    """Mean of the precision at the rank of each positive (ties broken by order); NaN without
    positives."""
    labels = np.asarray(labels, dtype=float)
    order = np.argsort(-np.asarray(probs, dtype=float), kind="stable")
    hits = labels[order]
    if hits.sum() == 0:
        return float("nan")
    ranks = np.flatnonzero(hits == 1) + 1
    return float(np.mean(np.cumsum(hits)[hits == 1] / ranks))


def precision_at_k(labels, probs, k: int) -> float:
    """Share of positives among the k highest scores (all rows when there are fewer than k)."""
    labels = np.asarray(labels, dtype=float)
    order = np.argsort(-np.asarray(probs, dtype=float), kind="stable")
    top = labels[order][:k]
    return float(top.mean()) if len(top) else float("nan")


def choose_threshold(labels, probs, strategy: str = "max_f1", target: float = 0.8) -> dict:
    """The operating threshold: ``max_f1``, the highest threshold reaching ``target`` recall
    (``recall``), or the lowest reaching ``target`` precision (``precision``).

    The returned ``threshold`` t is half-way between the chosen score and the next lower one, so
    Spark's rule (positive when probability > t) gives exactly the chosen cut. ``reached`` is False
    when no threshold reaches the target; then the cut with the best precision (or recall) is used.
    """
    if strategy not in THRESHOLD_STRATEGIES:
        raise ValueError(f"threshold strategy must be one of {', '.join(THRESHOLD_STRATEGIES)}")
    scores, recall, precision = pr_curve(labels, probs)
    if not len(scores):
        raise ValueError("no predictions to choose a threshold from")
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    reached = True
    if strategy == "max_f1":
        i = int(np.argmax(f1))
    elif strategy == "recall":
        ok = np.flatnonzero(recall >= target)
        reached = bool(len(ok))
        i = int(ok[0]) if reached else len(scores) - 1
    else:
        ok = np.flatnonzero(precision >= target)
        reached = bool(len(ok))
        i = int(ok[-1]) if reached else int(np.argmax(precision))
    lower = scores[i + 1] if i + 1 < len(scores) else 0.0
    return {"threshold": float((scores[i] + lower) / 2.0), "strategy": strategy,
            "target": float(target), "reached": reached, "precision": float(precision[i]),
            "recall": float(recall[i]), "f1": float(f1[i])}


def confusion(labels, probs, threshold: float) -> dict:
    labels = np.asarray(labels, dtype=int)
    predicted = (np.asarray(probs, dtype=float) > threshold).astype(int)
    return {"tp": int(((predicted == 1) & (labels == 1)).sum()),
            "fp": int(((predicted == 1) & (labels == 0)).sum()),
            "tn": int(((predicted == 0) & (labels == 0)).sum()),
            "fn": int(((predicted == 0) & (labels == 1)).sum())}


def per_video_ap(frame) -> dict:
    """{video: average precision} for the videos of ``frame`` (columns video, label, prob) that
    have positives."""
    return {video: average_precision(g.label, g.prob) for video, g in frame.groupby("video")
            if g.label.sum() > 0}


# --- figures (matplotlib, no display needed) -------------------------------------------------

def _axes(title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.subplots()
    ax.set_title(title)
    return fig, ax


def pr_figure(labels, probs, threshold: float | None = None, title: str = "Precision-recall"):
    fig, ax = _axes(title)
    _, recall, precision = pr_curve(labels, probs)
    ax.step(np.r_[0.0, recall], np.r_[precision[0] if len(precision) else 1.0, precision], where="post",
            label=f"pooled folds: areaUnderPR {area_under_pr(labels, probs):.3f}")
    ax.axhline(float(np.mean(labels)), color="grey", ls=":", label="positive rate")
    if threshold is not None:
        c = confusion(labels, probs, threshold)
        r = c["tp"] / max(c["tp"] + c["fn"], 1)
        p = c["tp"] / max(c["tp"] + c["fp"], 1) if c["tp"] + c["fp"] else 1.0
        ax.plot([r], [p], "o", color="crimson", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return fig


def roc_figure(labels, probs, title: str = "ROC"):
    fig, ax = _axes(title)
    fpr, tpr = roc_curve(labels, probs)
    ax.plot(fpr, tpr, label=f"pooled folds: areaUnderROC {area_under_roc(labels, probs):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    return fig


def histogram_figure(labels, probs, threshold: float | None = None,
                     title: str = "Scores by class"):
    fig, ax = _axes(title)
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    bins = np.linspace(0, 1, 26)
    ax.hist(probs[labels == 0], bins=bins, alpha=0.6, label=f"label 0 ({int((labels == 0).sum())})")
    ax.hist(probs[labels == 1], bins=bins, alpha=0.6, label=f"label 1 ({int((labels == 1).sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="crimson", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="prob_suspicious (out of fold)", ylabel="seconds")
    ax.legend(loc="upper center")
    return fig


def figures(frame, threshold: float | None = None) -> Mapping[str, object]:
    """The three validation figures of ``frame`` (columns label, prob), by artifact file name.

    The curves pool the out-of-fold predictions of all folds; the run's ``areaUnderPR`` and
    ``areaUnderROC`` metrics are means over folds, so the two figures can differ."""
    return {"pr_curve.png": pr_figure(frame.label, frame.prob, threshold),
            "roc_curve.png": roc_figure(frame.label, frame.prob),
            "score_histogram.png": histogram_figure(frame.label, frame.prob, threshold)}
