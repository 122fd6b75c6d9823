"""The Accelerate training loop shared by `hftk pretrain` and `hftk finetune`."""
