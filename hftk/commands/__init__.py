"""One module per CLI command: the work behind `hftk pretrain`, `finetune`, `convert`, `quantize`, `glue` and `run`.

`hftk.cli` parses and validates; these modules import torch and do the work.
"""
