"""Workstation side: datasets, the hybrid model, training and evaluation (TensorFlow/Keras)."""
