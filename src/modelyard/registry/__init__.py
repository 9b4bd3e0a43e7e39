"""Model registry: models, immutable versions, ONNX artifacts and their signatures."""
