#!/usr/bin/env bash
# GPU readiness check for hftk, unattended, about 5 minutes on one H100 (<= 8 minutes budgeted):
# bf16 training-step throughput and MFU of hftk's encoder and decoder against ModernBERT and Llama
# at BERT-base / GPT-2-small shapes, fused SDPA kernels, generate, and a 2-step FSDP job on the one
# GPU. Writes benchmarks/RESULTS-gpu.md (command, machine, load, date and commit at its top).
#
#   bash benchmarks/gpu_check.sh               # needs a CUDA device
#   bash benchmarks/gpu_check.sh --dry-run     # CPU, tiny shapes: checks the script (run by the tests)
#
# Exit code: 0 when every part ran (a missed MFU goal is reported, not an error), 1 when the FSDP job
# failed, 2 without a CUDA device (and no --dry-run).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHON=${PYTHON:-python}
if command -v nvidia-smi > /dev/null 2>&1; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
else
  gpu="no GPU"
fi
versions=$($PYTHON -c "import torch, transformers; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}')")
exec $PYTHON benchmarks/gpu_check.py "$@" \
  --header "## GPU check" --header "" \
  --header "- command: \`bash benchmarks/gpu_check.sh $*\`" \
  --header "- machine: $gpu; $(nproc) CPUs; $versions" \
  --header "- load before: \`$(uptime)\`" \
  --header "- date: $(date -u '+%Y-%m-%d %H:%M') UTC; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
