"""Detection and instance segmentation metrics for nucleus analysis."""

from nuclei_core.metrics.detection import DetectionScores, detection_scores, match_points
from nuclei_core.metrics.segmentation import (
    DSB_THRESHOLDS,
    PanopticAccumulator,
    aggregated_jaccard_index,
    dice,
    dsb_mean_average_precision,
    multiclass_count_r2,
    multiclass_panoptic_quality,
    panoptic_quality,
)

__all__ = [
    "DSB_THRESHOLDS",
    "DetectionScores",
    "PanopticAccumulator",
    "aggregated_jaccard_index",
    "detection_scores",
    "dice",
    "dsb_mean_average_precision",
    "match_points",
    "multiclass_count_r2",
    "multiclass_panoptic_quality",
    "panoptic_quality",
]
