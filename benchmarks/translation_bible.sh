#!/usr/bin/env bash
# es→en (and en→es) translation on ../shared's Bible (train 28,511 verse pairs; test = Luke + Ruth,
# 1,235 pairs): an hftk_seq2seq from scratch (`--model new`: the shipped finetune-translation
# recipe's model and settings, its BPE tokenizer trained on both sides of the training pairs) or
# from a denoising-pretrained folder, fine-tuned with `hftk finetune translation` for the recipe's
# step budget or MINUTES of wall clock, whichever ends first, scored once on the test books with
# SacreBLEU (BLEU and chrF, detokenized, signatures in metrics.json); and the copy-the-source
# baseline. Results: README.md, "Quality on the shared data".
#
#   MINUTES=60 bash benchmarks/translation_bible.sh all          # copy baseline + es→en + en→es
#   MINUTES=20 bash benchmarks/translation_bible.sh es-en        # one step at a time
#   MODEL=runs/pretrain-seq2seq bash benchmarks/translation_bible.sh es-en   # start from a pretrained folder
#   MODEL=random:runs/pretrain-seq2seq bash benchmarks/translation_bible.sh es-en   # ... or from its random twin
#   bash benchmarks/translation_bible.sh gpt-data && bash benchmarks/translation_bible.sh gpt-es-en   # decoder-only, same budget
#
# The decoder-only baseline: a fresh hftk_gpt (`finetune generation --model new`: 6 layers, d 256,
# RoPE, 6.8 M parameters: the seq2seq model's 3+3 layers as one stack) with its own 8k byte-level
# BPE trained on both languages, fine-tuned on "SOURCE\nEnglish:" -> " TARGET" prompts (the loss
# on the target only), with the same batch, schedule, label smoothing, beam and length penalty.
#
# The model selection split is ../shared's validation file (Philippians + Jonah, 151 pairs).
set -euo pipefail
R=${R:-runs/translation-bible}; S=${SHARED:-../shared}/data/translation/bible_en_es
MINUTES=${MINUTES:-60}; THREADS=${THREADS:-2}; MODEL=${MODEL:-new}; TAG=${TAG:-$(basename "${MODEL#random:}")}
[[ $MODEL == random:* ]] && TAG=random-$TAG

copy() {  # BLEU / chrF of the source text given as its own translation
  python - "$S/test.jsonl" <<'PY'
import json, sys
from hftk.metrics import load_metric
rows = [json.loads(line)["translation"] for line in open(sys.argv[1], encoding="utf-8")]
for src, tgt in (("es", "en"), ("en", "es")):
    hyp, ref = [r[src] for r in rows], [[r[tgt]] for r in rows]
    bleu = load_metric("bleu").compute(predictions=hyp, references=ref, return_signature=True)
    chrf = load_metric("chrf").compute(predictions=hyp, references=ref)
    print(f"copy {src}->{tgt}: BLEU {bleu['score']:.2f}  chrF {chrf['score']:.2f}  ({bleu['signature']})")
PY
}

gpt_data() {  # the generation task's layout (document -> summary) of each direction; the model comes from --model new
  python - "$S" "$R/gpt-data" <<'PY'
import json, sys
from pathlib import Path
shared, data = Path(sys.argv[1]), Path(sys.argv[2])
for src, tgt in (("es", "en"), ("en", "es")):
    (data / f"{src}-{tgt}").mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        rows = [json.loads(line)["translation"] for line in open(shared / f"{split}.jsonl", encoding="utf-8")]
        with open(data / f"{src}-{tgt}" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"document": r[src], "summary": r[tgt]}, ensure_ascii=False) + "\n" for r in rows)
PY
}

# Both models' fine-tuning: the shipped translation recipe's budget and settings (the wall clock only stops early).
TRAINING=(--set training.max_time_minutes=$MINUTES --set training.num_threads=$THREADS --set training.report_to=[]
  --set training.logging_steps=50)
# The decoder-only model gets the translation recipe's schedule, budget, smoothing and batching too.
GPT_TRAINING=(--set training.learning_rate=1e-3 --set training.lr_scheduler_type=inverse_sqrt --set training.warmup_steps=400
  --set training.label_smoothing_factor=0.1 --set training.max_steps=6000 --set training.num_train_epochs=null
  --set training.group_by_length=true --set training.eval_steps=1000 --set training.save_steps=1000)

summary() {  # RUN_DIR LABEL: the test metrics and the steps the budget allowed
  python -c "import json,sys; m=json.load(open('$1/metrics.json')); print('$2', {k: m[k] for k in m if k.startswith('test_') or k in ('train_steps', 'train_runtime_seconds')})"
}

gpt_direction() {  # SRC TGT: the decoder-only baseline, same data, budget and settings as direction()
  local name; name=$([ "$2" = en ] && echo English || echo Spanish)
  hftk finetune generation --model new --set model.new.tokenizer.vocab_size=8000 -o "$R/gpt-$1-$2" --overwrite \
    --set data.train_file=$R/gpt-data/$1-$2/train.jsonl --set data.validation_file=$R/gpt-data/$1-$2/validation.jsonl \
    --set data.test_file=$R/gpt-data/$1-$2/test.jsonl --set "data.prompt_template={document}\n$name:" \
    --set data.max_seq_length=256 --set generation.max_new_tokens=128 --set generation.num_beams=4 \
    --set generation.length_penalty=0.6 --set training.per_device_train_batch_size=32 "${TRAINING[@]}" "${GPT_TRAINING[@]}" "${@:3}"
  summary "$R/gpt-$1-$2" "gpt $1->$2"
}

direction() {  # SRC TGT
  hftk finetune translation --model "$MODEL" -o "$R/$TAG-$1-$2" --overwrite \
    --set data.source_lang=$1 --set data.target_lang=$2 \
    --set data.train_file=$S/train.jsonl --set data.validation_file=$S/validation.jsonl --set data.test_file=$S/test.jsonl "${TRAINING[@]}" "${@:3}"
  summary "$R/$TAG-$1-$2" "$1->$2"
}

case "${1:-all}" in
  all) copy; direction es en; direction en es ;;
  copy) copy ;;
  es-en) direction es en "${@:2}" ;;
  en-es) direction en es "${@:2}" ;;
  gpt-data) gpt_data ;;
  gpt-es-en) gpt_direction es en "${@:2}" ;;
  gpt-en-es) gpt_direction en es "${@:2}" ;;
  *) echo "usage: $0 all|copy|es-en|en-es|gpt-data|gpt-es-en|gpt-en-es [--set ...]"; exit 2 ;;
esac
