"""hftk's own Transformer family (filled in by the model-family work)."""


def register_auto_classes() -> None:
    """Register hftk configs and heads with transformers' Auto classes."""
