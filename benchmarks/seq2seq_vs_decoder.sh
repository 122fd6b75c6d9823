#!/usr/bin/env bash
# Encoder–decoder vs decoder-only, pretrained vs random init, at equal budgets (README, "Translation
# (es→en on the Bible) and denoising pretraining"). Uses the tokenizers of the two from-scratch
# es→en runs of benchmarks/translation_bible.sh (same R), so run those first:
#
#   bash benchmarks/translation_bible.sh es-en && bash benchmarks/translation_bible.sh gpt-data && bash benchmarks/translation_bible.sh gpt-es-en
#   PRETRAIN_MINUTES=10 MINUTES=5 bash benchmarks/seq2seq_vs_decoder.sh pretrain headlines
#   MODEL=runs/translation-bible/pretrain-seq2seq MINUTES=30 bash benchmarks/translation_bible.sh es-en
#
# pretrain: a model of each kind pretrained for PRETRAIN_MINUTES of wall clock, one after the other, on
#   ../shared/data/pretrain (Austen + Brown) plus both sides of the Bible's training pairs (read as
#   translation rows): the hftk_seq2seq by denoising (BART text infilling), the hftk_gpt by
#   next-token prediction, each with the tokenizer and shape of the from-scratch translation model.
# headlines: bbc_headlines (1,780 articles -> headline; the 445 test articles scored once after the
#   last step, beam 4) for MINUTES each: the encoder–decoder (`finetune summarization`) and the
#   decoder-only model (`finetune generation`, "ARTICLE\nTL;DR:" -> " HEADLINE"), each pretrained and
#   its random-init twin (`--model random:FOLDER`); the same batch, schedule (inverse square root after
#   100 warm-up steps), dropout 0.1, no label smoothing, 128 article tokens, 24 headline tokens.
set -euo pipefail
R=${R:-runs/translation-bible}; S=${SHARED:-../shared}/data
PRETRAIN_MINUTES=${PRETRAIN_MINUTES:-10}; MINUTES=${MINUTES:-5}; THREADS=${THREADS:-1}
DROPOUT=(--set model.config.hidden_dropout_prob=0.1 --set model.config.attention_probs_dropout_prob=0.1)  # pretraining had none

pretrain() {
  local common=(--set "data.train_files=[$S/pretrain,$S/translation/bible_en_es/train.jsonl]" --set training.max_steps=null
    --set training.max_time_minutes=$PRETRAIN_MINUTES --set training.num_threads=$THREADS --set training.report_to=[])
  hftk pretrain pretrain-seq2seq -o "$R/pretrain-seq2seq" --overwrite --set tokenizer.name_or_path=$R/new-es-en "${common[@]}"
  hftk pretrain pretrain-gpt -o "$R/pretrain-gpt" --overwrite --set tokenizer.name_or_path=$R/gpt-es-en \
    --set model.config.num_hidden_layers=6 --set model.config.max_position_embeddings=512 "${common[@]}"
}

headline() {  # TASK MODEL NAME: one fine-tuning run on bbc_headlines
  hftk finetune "$1" --model "$2" -o "$R/headlines/$3" --overwrite "${DROPOUT[@]}" \
    --set data.train_file=$S/generation/bbc_headlines/train.jsonl --set data.validation_file=$S/generation/bbc_headlines/test.jsonl \
    --set generation.num_beams=4 --set generation.max_new_tokens=20 --set training.per_device_train_batch_size=16 \
    --set training.max_time_minutes=$MINUTES --set training.num_train_epochs=100 --set training.learning_rate=1e-3 \
    --set training.warmup_steps=100 --set training.lr_scheduler_type=inverse_sqrt --set training.eval_steps=100000 \
    --set training.save_steps=100000 --set training.num_threads=$THREADS --set training.report_to=[] "${@:4}"
}

headlines() {
  local s2s=(--set data.max_seq_length=128 --set data.max_target_length=24 --set training.label_smoothing_factor=0
    --set training.max_steps=null)  # the wall clock alone, as measured
  local gpt=(--set data.max_seq_length=152)  # 128 article tokens + up to 24 of headline
  headline summarization "$R/pretrain-seq2seq" seq2seq-pretrained "${s2s[@]}"
  headline summarization "random:$R/pretrain-seq2seq" seq2seq-random "${s2s[@]}"
  headline generation "$R/pretrain-gpt" gpt-pretrained "${gpt[@]}"
  headline generation "random:$R/pretrain-gpt" gpt-random "${gpt[@]}"
  table
}

table() {
  python - "$R/headlines" <<'PY'
import json, sys
from pathlib import Path
print("| model | ROUGE-1 | ROUGE-2 | ROUGE-L | eval loss | steps |")
print("|---|---|---|---|---|---|")
for name in ("seq2seq-pretrained", "seq2seq-random", "gpt-pretrained", "gpt-random"):
    path = Path(sys.argv[1]) / name / "metrics.json"
    if path.is_file():
        m = json.loads(path.read_text())
        print(f"| {name} | {m['eval_rouge1']:.2f} | {m['eval_rouge2']:.2f} | {m['eval_rougeL']:.2f} | {m['eval_loss']:.3f} | {m['train_steps']} |")
PY
}

stages=("$@"); [ $# -gt 0 ] || stages=(pretrain headlines)
for stage in "${stages[@]}"; do
  case "$stage" in
    pretrain) pretrain ;;
    headlines) headlines ;;
    table) table ;;
    *) echo "usage: $0 [pretrain] [headlines] [table]"; exit 2 ;;
  esac
done
