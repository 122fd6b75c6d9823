"""Deployable copies of a saved model in formats other tools load (ONNX for ONNX Runtime)."""
