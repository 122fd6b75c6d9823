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
#   bash benchmarks/translation_bible.sh init-gpt gpt-es-en        # the decoder-only baseline, same budget
#
# The decoder-only baseline: a random hftk_gpt (6 layers, d 256, RoPE, 6.8 M parameters: the
# seq2seq model's 3+3 layers as one stack) with its own 8k byte-level BPE on both languages,
# fine-tuned by `hftk finetune generation` on "SOURCE\nEnglish:" -> " TARGET" prompts (the loss on
# the target only), with the same batch, schedule, beam and length penalty (no label smoothing:
# `finetune generation` has none).
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

init_gpt() {  # the decoder-only baseline's tokenizer (8k byte-level BPE, both languages) and model
  python - "$S" "$R/gpt-init" "$R/gpt-data" <<'PY'
import json, sys
from pathlib import Path
import torch
import hftk  # noqa: F401
from hftk.data.tokenizer import save_tokenizer, train_tokenizer
from hftk.models import HftkGptConfig, HftkGptForCausalLM
shared, out, data = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
splits = {s: [json.loads(line)["translation"] for line in open(shared / f"{s}.jsonl", encoding="utf-8")] for s in ("train", "validation", "test")}
for src, tgt in (("es", "en"), ("en", "es")):  # the generation task's columns: document -> summary
    (data / f"{src}-{tgt}").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(data / f"{src}-{tgt}" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"document": r[src], "summary": r[tgt]}, ensure_ascii=False) + "\n" for r in rows)
tokenizer = train_tokenizer([r[k] for r in splits["train"] for k in ("en", "es")], kind="bpe", vocab_size=8000, model_max_length=512)
torch.manual_seed(0)
config = HftkGptConfig(
    vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
    max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    pad_token_id=tokenizer.pad_token_id,
)
model = HftkGptForCausalLM(config)
model.save_pretrained(out)
save_tokenizer(tokenizer, out)
print(f"{out}: {model.num_parameters() / 1e6:.1f} M parameters, vocabulary {len(tokenizer)}")
PY
}

# Both models' fine-tuning: the same time budget, schedule, evaluation and checkpoint cadence.
TRAINING=(--set training.max_time_minutes=$MINUTES --set training.num_train_epochs=100 --set training.learning_rate=1e-3
  --set training.warmup_steps=400 --set training.lr_scheduler_type=inverse_sqrt --set training.eval_steps=1000
  --set training.save_steps=1000 --set training.num_threads=$THREADS --set training.report_to=[] --set training.logging_steps=50)

summary() {  # RUN_DIR LABEL: the test metrics and the steps the budget allowed
  python -c "import json,sys; m=json.load(open('$1/metrics.json')); print('$2', {k: m[k] for k in m if k.startswith('test_') or k in ('train_steps', 'train_runtime_seconds')})"
}

gpt_direction() {  # SRC TGT: the decoder-only baseline, same data, budget and settings as direction()
  local name; name=$([ "$2" = en ] && echo English || echo Spanish)
  hftk finetune generation --model "$R/gpt-init" -o "$R/gpt-$1-$2" --overwrite \
    --set data.train_file=$R/gpt-data/$1-$2/train.jsonl --set data.validation_file=$R/gpt-data/$1-$2/validation.jsonl \
    --set data.test_file=$R/gpt-data/$1-$2/test.jsonl --set "data.prompt_template={document}\n$name:" \
    --set data.max_seq_length=256 --set generation.max_new_tokens=128 --set generation.num_beams=4 \
    --set generation.length_penalty=0.6 --set training.per_device_train_batch_size=32 "${TRAINING[@]}" "${@:3}"
  summary "$R/gpt-$1-$2" "gpt $1->$2"
}

direction() {  # SRC TGT
  hftk finetune translation --model "$MODEL" -o "$R/$TAG-$1-$2" --overwrite \
    --set data.source_lang=$1 --set data.target_lang=$2 \
    --set data.train_file=$S/train.jsonl --set data.validation_file=$S/validation.jsonl --set data.test_file=$S/test.jsonl "${TRAINING[@]}" "${@:3}"
  summary "$R/$TAG-$1-$2" "$1->$2"
}

case "${1:-all}" in
  all) init; copy; direction es en; direction en es ;;
  init) init ;;
  copy) copy ;;
  es-en) direction es en "${@:2}" ;;
  en-es) direction en es "${@:2}" ;;
  init-gpt) init_gpt ;;
  gpt-es-en) gpt_direction es en "${@:2}" ;;
  gpt-en-es) gpt_direction en es "${@:2}" ;;
  *) echo "usage: $0 all|init|copy|es-en|en-es|init-gpt|gpt-es-en|gpt-en-es [--set ...]"; exit 2 ;;
esac
