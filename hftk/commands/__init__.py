"""One module per CLI command: the work behind each `hftk` subcommand.

pretrain, finetune (glue_benchmark: `finetune glue --task all`), evaluate, distill, run,
convert (convert_seq2seq: its seq2seq half), quantize, push, recipes, accelerate_config.
`hftk.cli` parses the arguments and calls these; library code they drive (models, tasks,
objectives, distillation, quantization, the Hub client) lives in its own packages.
"""
