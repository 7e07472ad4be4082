"""Nucleus models: one architecture and its post-processing per module, behind ``NucleusModel``."""
