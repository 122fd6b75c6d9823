"""Linear probes on frozen encoder features: does pretraining give a classifier more to read than random init?

    python benchmarks/probe_features.py runs/pretrain-default RANDOM_TWIN --train 1000

For each model: the final hidden states ([CLS] and mean-pooled) and the bag of input embeddings of
fine_foods reviews, a logistic regression per feature set fitted on `--train` training reviews with
C picked on the last 400 training reviews (never on test), scored once on the 1,000 test reviews.
Also prints how collapsed the input embeddings of the task's tokens are (mean pairwise cosine; 0 for
random vectors) and how much of a token's identity survives the first block: the mean cosine between
the residual stream after block 1 and the embedding layer's output, each centred over the batch's
tokens (near 1 at random init; near 0 when the block writes over the token). Needs scikit-learn and ../shared.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

import hftk  # noqa: F401  (registers hftk's model types)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "classification" / "fine_foods"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def features(folder: str, texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    table = model.get_input_embeddings().weight.detach()
    out: dict[str, list[torch.Tensor]] = {"cls": [], "mean": [], "embedding bag": [], "identity": []}
    with torch.no_grad():
        for start in range(0, len(texts), 100):
            batch = tokenizer(texts[start : start + 100], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            batch.pop("token_type_ids", None)
            mask = batch["attention_mask"].unsqueeze(-1).float()
            states = model(**batch, output_hidden_states=True).hidden_states
            hidden = states[-1]
            real = batch["attention_mask"].bool()
            before, after = states[0][real], states[1][real]  # around block 1, centred: what LayerNorm keeps
            kept = torch.nn.functional.cosine_similarity(after - after.mean(0), before - before.mean(0), dim=-1)
            out["identity"].append(kept)
            out["cls"].append(hidden[:, 0])
            out["mean"].append((hidden * mask).sum(1) / mask.sum(1))
            out["embedding bag"].append((table[batch["input_ids"]] * mask).sum(1) / mask.sum(1))
    return {name: torch.cat(parts).numpy() for name, parts in out.items()}


def collapse(folder: str, texts: list[str]) -> float:
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    ids = sorted({i for text in texts for i in tokenizer(text)["input_ids"]})
    vectors = torch.nn.functional.normalize(model.get_input_embeddings().weight.detach()[ids], dim=-1)
    cosines, n = vectors @ vectors.T, len(ids)
    return float((cosines.sum() - n) / (n * n - n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders (e.g. a pretrained encoder and its random twin)")
    parser.add_argument("--train", type=int, default=1000, help="labelled training reviews the probe sees")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_rows, test_rows = rows(DATA / "train.jsonl"), rows(DATA / "test.jsonl")
    fit_rows, dev_rows = train_rows[: args.train], train_rows[-400:]
    labels = sorted({r["label"] for r in train_rows})
    y = {name: np.array([labels.index(r["label"]) for r in part]) for name, part in (("fit", fit_rows), ("dev", dev_rows), ("test", test_rows))}
    majority = max(np.mean(y["test"] == k) for k in range(len(labels)))
    print(f"fine_foods: {len(fit_rows)} probe-training reviews, C picked on 400 dev reviews, test 1,000 (majority {majority:.3f})")
    for folder in args.models:
        parts = {name: features(folder, [r["text"] for r in part], args.max_length) for name, part in (("fit", fit_rows), ("dev", dev_rows), ("test", test_rows))}
        identity = float(parts["fit"].pop("identity").mean())
        for part in ("dev", "test"):
            parts[part].pop("identity")
        scores = []
        for kind in parts["fit"]:
            probes = [LogisticRegression(C=c, max_iter=3000).fit(parts["fit"][kind], y["fit"]) for c in (0.01, 0.1, 1, 10, 100)]
            best = max(probes, key=lambda probe: probe.score(parts["dev"][kind], y["dev"]))
            scores.append(f"{kind} {best.score(parts['test'][kind], y['test']):.3f} (C={best.C:g})")
        print(
            f"{folder}: "
            + ", ".join(scores)
            + f"; token-embedding collapse {collapse(folder, [r['text'] for r in fit_rows]):.3f}"
            + f"; token identity after block 1 {identity:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
