"""Post-processing steps shared by models (peak finding, NMS, instance splitting)."""
