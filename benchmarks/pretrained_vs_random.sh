#!/usr/bin/env bash
# Does pretraining pay with the fine-tuning defaults? A pretrained hftk encoder and its random-init
# twin (same config and tokenizer) fine-tuned with the shipped recipes' defaults on fine_foods,
# bbc_news and wnut16 (and brown_cloze QA with TASKS=brown_cloze), several seeds each; prints mean ±
# standard deviation per task and init.
#
#   bash benchmarks/pretrained_vs_random.sh runs/pretrain-default          # then: ... table
#   SEEDS="1 2 3" TRAIN=500 TAG=old bash benchmarks/pretrained_vs_random.sh MODEL --set training.learning_rate=1e-4
#   TASKS=fine_foods PARALLEL=1 bash benchmarks/pretrained_vs_random.sh MODEL   # one task; both inits of a seed at once
#   SIZES="300 1000" OTHERS="electra=runs/electra" bash benchmarks/pretrained_vs_random.sh runs/mlm   # a learning curve, 3 inits
#
# SIZES (default: TRAIN, 500) training examples per task, drawn at random with the run's seed;
# sequences cut at 64 tokens, the recipe's epochs (at least training.min_steps), one thread per run. No model selection: the
# shipped test file is the validation file and is scored once, after the last step.
set -euo pipefail
R=${R:-runs/pretrained-vs-random}; S=${SHARED:-../shared}/data
SEEDS=${SEEDS:-"1 2 3"}; SIZES=${SIZES:-${TRAIN:-500}}; TAG=${TAG:-defaults}; TASKS=${TASKS:-"fine_foods bbc_news wnut16"}
OTHERS=${OTHERS:-}  # more inits to fine-tune alongside, NAME=FOLDER each (same tokenizer as MODEL for a fair twin)

if [ "${1:-}" = table ]; then
  python - "$R" <<'PY'
import json, statistics, sys
from pathlib import Path
runs = {}
for path in sorted(Path(sys.argv[1]).glob("*/*/n*/*/seed-*/metrics.json"), key=lambda p: (p.parts[-6:-4], int(p.parts[-4][1:]), p.parts[-3:])):
    tag, task, size, init = path.parts[-6:-2]
    metrics = json.loads(path.read_text())
    score = metrics["eval_f1" if task in ("wnut16", "brown_cloze") else "eval_accuracy"]  # entity F1 (NER), SQuAD v2 F1 (QA)
    runs.setdefault((tag, task, size), {}).setdefault(init, []).append(score)
def show(scores):
    spread = statistics.stdev(scores) if len(scores) > 1 else float("nan")
    return f"{statistics.mean(scores):.3f} ± {spread:.3f} (n={len(scores)}: {', '.join(f'{s:.3f}' for s in scores)})"
for (tag, task, size), inits in runs.items():
    print(f"{tag:10s} {task:11s} {size:6s} " + "   ".join(f"{init}: {show(s)}" for init, s in sorted(inits.items())))
PY
  exit 0
fi

MODEL=$1; shift
TWIN=random:$MODEL  # MODEL's random-init twin (its config and tokenizer), drawn with each run's training.seed
common=(--set training.num_threads=1 --set training.save_steps=null --set training.report_to=[]
        --set training.eval_steps=100000 --set data.max_seq_length=64)
declare -A FOLDER=([pretrained]=$MODEL [random]=$TWIN)
for other in $OTHERS; do FOLDER[${other%%=*}]=${other#*=}; done
run() {  # INIT SEED NAME SIZE [--set ...]
  local init=$1 seed=$2 name=$3 size=$4; shift 4
  local m=${FOLDER[$init]} task=classification set=classification/$name extra=()
  [ $name = wnut16 ] && { task=ner; set=ner/wnut16; }
  [ $name = brown_cloze ] && {  # SQuAD v2 layout; windows of 128 tokens (a 64-token window leaves no room for context)
    task=qa; set=qa/brown_cloze
    extra=(--set data.version_2_with_negative=true --set data.max_seq_length=128); }
  local o=$R/$TAG/$name/n$size/$init/seed-$seed
  mkdir -p $(dirname $o)
  [ -f $o/metrics.json ] && return 0
  hftk finetune $task --model $m -o $o --overwrite --set training.seed=$seed \
    --set data.max_train_samples=$size --set data.train_sample_seed=$seed \
    --set data.train_file=$S/$set/train.jsonl --set data.validation_file=$S/$set/test.jsonl "${common[@]}" "${extra[@]}" "$@" \
    > $o.log 2>&1 || { echo "failed: $o (see $o.log)"; return 1; }
}
jobs=()  # every run, in order; PARALLEL=1: two 1-thread runs at a time
for name in $TASKS; do for size in $SIZES; do for seed in $SEEDS; do for init in "${!FOLDER[@]}"; do
  jobs+=("$init $seed $name $size")
done; done; done; done
for ((i = 0; i < ${#jobs[@]}; i++)); do
  if [ -n "${PARALLEL:-}" ] && ((i + 1 < ${#jobs[@]})); then
    run ${jobs[i]} "$@" & run ${jobs[i + 1]} "$@" & wait; ((i += 1))
  else
    run ${jobs[i]} "$@"
  fi
done
bash "$0" table
