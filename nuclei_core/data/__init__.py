"""Dataset readers, patch sampling and augmentation for training and evaluation."""
