"""Detection, instance segmentation and classification metrics for nucleus analysis."""

from nuclei_core.metrics.classification import (
    classification_report,
    confusion_matrix,
    one_vs_rest_auc,
    per_class_scores,
)
from nuclei_core.metrics.detection import DetectionScores, detection_scores, match_points
from nuclei_core.metrics.segmentation import (
    DSB_THRESHOLDS,
    PanopticAccumulator,
    aggregated_jaccard_index,
    average_f1,
    dice,
    dsb_mean_average_precision,
    error_anatomy,
    multiclass_count_r2,
    multiclass_panoptic_quality,
    panoptic_quality,
)

__all__ = [
    "DSB_THRESHOLDS",
    "DetectionScores",
    "PanopticAccumulator",
    "aggregated_jaccard_index",
    "average_f1",
    "classification_report",
    "confusion_matrix",
    "detection_scores",
    "dice",
    "dsb_mean_average_precision",
    "error_anatomy",
    "match_points",
    "multiclass_count_r2",
    "multiclass_panoptic_quality",
    "one_vs_rest_auc",
    "panoptic_quality",
    "per_class_scores",
]
