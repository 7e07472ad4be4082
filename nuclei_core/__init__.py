"""nuclei_core: models, whole-slide engine, outputs and metrics for nucleus analysis."""

__version__ = "0.1.0"
