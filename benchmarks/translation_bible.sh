#!/usr/bin/env bash
# es→en (and en→es) translation on ../shared's Bible (train 28,511 verse pairs; test = Luke + Ruth,
# 1,235 pairs): an hftk_seq2seq from random initialisation (or from a denoising-pretrained folder),
# fine-tuned with `hftk finetune translation` for a fixed wall-clock budget, scored once on the
# test books with SacreBLEU (BLEU and chrF, detokenized, signatures in metrics.json); and the
# copy-the-source baseline. Results: README.md, "Quality on the shared data".
#
#   MINUTES=60 bash benchmarks/translation_bible.sh all          # init + copy baseline + es→en + en→es
#   MINUTES=20 bash benchmarks/translation_bible.sh init es-en    # one step at a time
#   MODEL=runs/pretrain-seq2seq bash benchmarks/translation_bible.sh es-en   # start from a pretrained folder
#
# The model selection split is ../shared's validation file (Philippians + Jonah, 151 pairs).
set -euo pipefail
R=${R:-runs/translation-bible}; S=${SHARED:-../shared}/data/translation/bible_en_es
MINUTES=${MINUTES:-60}; THREADS=${THREADS:-2}; MODEL=${MODEL:-$R/init}; TAG=${TAG:-$(basename "$MODEL")}

init() {  # a seq2seq BPE tokenizer (8k, both languages) and a random hftk_seq2seq: 3+3 layers, d 256
  python - "$S/train.jsonl" "$R/init" <<'PY'
import json, sys
import torch
import hftk  # noqa: F401
from hftk.data.tokenizer import save_tokenizer, train_tokenizer
from hftk.models import HftkSeq2SeqConfig, HftkSeq2SeqForConditionalGeneration
rows = [json.loads(line)["translation"] for line in open(sys.argv[1], encoding="utf-8")]
tokenizer = train_tokenizer([r[k] for r in rows for k in ("en", "es")], kind="seq2seq", vocab_size=8000, model_max_length=256)
torch.manual_seed(0)
config = HftkSeq2SeqConfig(
    vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=3, num_attention_heads=4, intermediate_size=1024,
    max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id,
)
model = HftkSeq2SeqForConditionalGeneration(config)
model.save_pretrained(sys.argv[2])
save_tokenizer(tokenizer, sys.argv[2])
print(f"{sys.argv[2]}: {model.num_parameters() / 1e6:.1f} M parameters, vocabulary {len(tokenizer)}")
PY
}

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

direction() {  # SRC TGT
  hftk finetune translation --model "$MODEL" -o "$R/$TAG-$1-$2" --overwrite \
    --set data.source_lang=$1 --set data.target_lang=$2 \
    --set data.train_file=$S/train.jsonl --set data.validation_file=$S/validation.jsonl --set data.test_file=$S/test.jsonl \
    --set training.max_time_minutes=$MINUTES --set training.num_train_epochs=100 --set training.learning_rate=1e-3 \
    --set training.warmup_steps=400 --set training.lr_scheduler_type=inverse_sqrt \
    --set training.eval_steps=1000 --set training.save_steps=1000 --set training.num_threads=$THREADS \
    --set training.report_to=[] --set training.logging_steps=50 "${@:3}"
  python -c "import json,sys; m=json.load(open('$R/$TAG-$1-$2/metrics.json')); print('$1->$2', {k: m[k] for k in m if k.startswith('test_') or k in ('train_steps', 'train_runtime_seconds')})"
}

case "${1:-all}" in
  all) init; copy; direction es en; direction en es ;;
  init) init ;;
  copy) copy ;;
  es-en) direction es en "${@:2}" ;;
  en-es) direction en es "${@:2}" ;;
  *) echo "usage: $0 all|init|copy|es-en|en-es [--set ...]"; exit 2 ;;
esac
