"""Post-training int8 quantization, TFLite export with the Grad-CAM sub-model, and the fidelity gate."""
