#!/usr/bin/env bash
# Does pretraining pay with the fine-tuning defaults? A pretrained hftk encoder and its random-init
# twin (same config and tokenizer) fine-tuned with the shipped recipes' defaults on fine_foods,
# bbc_news and wnut16, several seeds each; prints mean ± standard deviation per task and init.
#
#   bash benchmarks/pretrained_vs_random.sh runs/pretrain-default          # then: ... table
#   SEEDS="1 2 3" TRAIN=500 TAG=old bash benchmarks/pretrained_vs_random.sh MODEL --set training.learning_rate=1e-4
#   TASKS=fine_foods PARALLEL=1 bash benchmarks/pretrained_vs_random.sh MODEL   # one task; both inits of a seed at once
#
# Budget kept small for a shared 2-core machine: TRAIN training examples per task (default 500),
# sequences cut at 64 tokens, the recipe's epochs, one thread per run. No model selection: the
# shipped test file is the validation file and is scored once, after the last step.
set -euo pipefail
R=${R:-runs/pretrained-vs-random}; S=${SHARED:-../shared}/data
SEEDS=${SEEDS:-"1 2 3"}; TRAIN=${TRAIN:-500}; TAG=${TAG:-defaults}; TASKS=${TASKS:-"fine_foods bbc_news wnut16"}

if [ "${1:-}" = table ]; then
  python - "$R" <<'PY'
import json, statistics, sys
from pathlib import Path
runs = {}
for path in sorted(Path(sys.argv[1]).glob("*/*/*/seed-*/metrics.json")):
    tag, task, init = path.parts[-5:-2]
    metrics = json.loads(path.read_text())
    score = metrics["eval_f1" if task == "wnut16" else "eval_accuracy"]  # entity F1 (seqeval) for NER
    runs.setdefault((tag, task), {}).setdefault(init, []).append(score)
def show(scores):
    spread = statistics.stdev(scores) if len(scores) > 1 else float("nan")
    return f"{statistics.mean(scores):.3f} ± {spread:.3f} (n={len(scores)}: {', '.join(f'{s:.3f}' for s in scores)})"
for (tag, task), inits in sorted(runs.items()):
    print(f"{tag:10s} {task:11s} " + "   ".join(f"{init}: {show(s)}" for init, s in sorted(inits.items())))
PY
  exit 0
fi

MODEL=$1; shift
TWIN=$R/random-twin
if [ ! -f $TWIN/config.json ]; then
  python -c "
from pathlib import Path
from hftk.commands.pipeline import write_random_twin
write_random_twin(Path('$MODEL'), Path('$TWIN'), 0, 'mlm', False, print)"
fi
common=(--set training.num_threads=1 --set training.save_steps=null --set training.report_to=[]
        --set training.eval_steps=100000 --set data.max_seq_length=64 --set data.max_train_samples=$TRAIN)
run() {  # INIT SEED NAME [--set ...]
  local init=$1 seed=$2 name=$3; shift 3
  local m=$MODEL task=classification set=classification/$name
  [ $init = random ] && m=$TWIN
  [ $name = wnut16 ] && { task=ner; set=ner/wnut16; }
  local o=$R/$TAG/$name/$init/seed-$seed
  mkdir -p $R/$TAG/$name/$init
  [ -f $o/metrics.json ] && return 0
  hftk finetune $task --model $m -o $o --overwrite --set training.seed=$seed \
    --set data.train_file=$S/$set/train.jsonl --set data.validation_file=$S/$set/test.jsonl "${common[@]}" "$@" \
    > $o.log 2>&1 || { echo "failed: $o (see $o.log)"; return 1; }
}
for name in $TASKS; do
  for seed in $SEEDS; do
    if [ -n "${PARALLEL:-}" ]; then  # the two inits of a seed side by side (two 1-thread runs)
      run pretrained $seed $name "$@" & run random $seed $name "$@" & wait
    else
      run pretrained $seed $name "$@"; run random $seed $name "$@"
    fi
  done
done
bash "$0" table
