"""Linear probes of frozen token features on wnut16: what a token classifier can read from each layer.

    python benchmarks/probe_token_features.py runs/ttq/pretrain/hftk runs/ttq/pretrain/modernbert-25 RANDOM_TWIN

The cheap half of the question "why does ModernBERT's body fine-tune better on wnut16 than hftk's?"
(issue 30): transformers' ModernBertForTokenClassification puts the classifier on the pretrained MLM
head's dense + activation + norm; hftk's HftkBertForTokenClassification puts it on the body's
output and drops that layer. For every model and each feature set, a linear classifier per word
(first sub-token, as `hftk finetune ner` labels it; ridge, one-vs-rest, closed form: seconds even on a
loaded CPU) is fitted on wnut16 training sentences, its penalty and class weighting picked on the last
300 training sentences, and scored once on the test file with seqeval's entity F1:

    body       the encoder's last hidden state (both bodies end in a norm)
    mlm-head   the MLM head's dense + activation + norm applied to it (what the decoder reads)
    embedding  the input token embeddings alone (a floor: no context)

With `--detect`, the probe instead tells entity words (any B-/I- tag) from the rest, scored by ROC
AUC: a continuous score that still separates feature sets where the 21-tag probe's entity F1 sits
at its floor (weakly pretrained models).

No fine-tuning: this measures what the frozen features hold, not how fine-tuning moves them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.metrics import roc_auc_score
from transformers import AutoModelForMaskedLM, AutoTokenizer

import hftk  # noqa: F401  (registers hftk's model types)
from hftk.metrics import load_metric

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ner" / "wnut16"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mlm_head_features(model, hidden: torch.Tensor) -> torch.Tensor:
    """The MLM head minus the vocabulary decoder, for hftk_bert (`head.features`) and ModernBERT (`head`)."""
    head = model.head
    return head.features(hidden) if hasattr(head, "features") else head(hidden)


def word_features(folder: str, sentences: list[list[str]], max_length: int) -> dict[str, list[np.ndarray]]:
    """Per sentence, one row per word that survives truncation (its first sub-token) for each feature set."""
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForMaskedLM.from_pretrained(folder).eval()
    out: dict[str, list[np.ndarray]] = {"body": [], "mlm-head": [], "embedding": []}
    with torch.no_grad():
        for start in range(0, len(sentences), 64):
            chunk = sentences[start : start + 64]
            batch = tokenizer(chunk, is_split_into_words=True, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            hidden = model.base_model(**inputs).last_hidden_state
            sets = {"body": hidden, "mlm-head": mlm_head_features(model, hidden), "embedding": model.get_input_embeddings()(inputs["input_ids"])}
            for row in range(len(chunk)):
                words = batch.word_ids(row)
                first = [i for i, w in enumerate(words) if w is not None and (i == 0 or words[i - 1] != w)]
                for name, tensor in sets.items():
                    out[name].append(tensor[row, first].float().numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="MLM folders (hftk_bert, ModernBERT) with their tokenizers")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--features", nargs="+", default=["body", "mlm-head", "embedding"])
    parser.add_argument("--detect", action="store_true", help="entity word or not, ROC AUC (instead of 21 tags, entity F1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = rows(DATA / "train.jsonl"), rows(DATA / "test.jsonl")
    fit, dev = train[:-300], train[-300:]
    tags = sorted({t for r in train for t in r["ner_tags"]})
    seqeval = load_metric("seqeval")
    print(f"wnut16: {len(fit)} probe-training sentences, C picked on {len(dev)}, scored on {len(test)} test sentences; {len(tags)} tags")
    for folder in args.models:
        parts = {name: word_features(folder, [r["tokens"] for r in part], args.max_length) for name, part in (("fit", fit), ("dev", dev), ("test", test))}
        gold = {name: [r["ner_tags"][: len(f)] for r, f in zip(part, parts[name]["body"])] for name, part in (("fit", fit), ("dev", dev), ("test", test))}
        results = []
        for kind in args.features:
            x = {name: np.concatenate(parts[name][kind]) for name in parts}
            mean, std = x["fit"].mean(0), x["fit"].std(0) + 1e-6
            x = {name: (value - mean) / std for name, value in x.items()}
            y = np.array([tags.index(t) for sentence in gold["fit"] for t in sentence])
            if args.detect:
                is_entity = {split: np.array([t != "O" for sentence in gold[split] for t in sentence]) for split in gold}
                fitted = [RidgeClassifier(alpha=a).fit(x["fit"], is_entity["fit"]) for a in (1.0, 10.0, 100.0, 1000.0)]
                dev_auc = [roc_auc_score(is_entity["dev"], probe.decision_function(x["dev"])) for probe in fitted]
                best = fitted[int(np.argmax(dev_auc))]
                test_auc = roc_auc_score(is_entity["test"], best.decision_function(x["test"]))
                results.append(f"{kind} AUC {test_auc:.3f} (alpha={best.alpha:g}; dev {max(dev_auc):.3f})")
                continue

            def entity_f1(probe, split: str) -> float:
                predicted, index = [], 0
                labels = probe.predict(x[split])
                for sentence in gold[split]:
                    predicted.append([tags[k] for k in labels[index : index + len(sentence)]])
                    index += len(sentence)
                return seqeval.compute(predictions=predicted, references=gold[split])["overall_f1"]

            probes = [RidgeClassifier(alpha=a, class_weight=w).fit(x["fit"], y) for a in (1.0, 10.0, 100.0, 1000.0) for w in (None, "balanced")]
            dev_scores = [entity_f1(probe, "dev") for probe in probes]
            best = probes[int(np.argmax(dev_scores))]
            setting = f"alpha={best.alpha:g}{', balanced' if best.class_weight else ''}"
            results.append(f"{kind} {entity_f1(best, 'test'):.3f} ({setting}; dev {max(dev_scores):.3f})")
        what = "entity-word detection" if args.detect else "entity F1"
        print(f"{folder}: test {what} of a linear probe: " + ", ".join(results), flush=True)


if __name__ == "__main__":
    main()
