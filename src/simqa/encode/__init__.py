"""Question text to unit vectors: the model on disk, the torch and int8 ONNX encoders,
and the calibrated threshold of known models."""
