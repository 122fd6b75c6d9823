"""The raw text of a fine-tuning task's training split: what a fresh model's tokenizer is trained on.

`hftk finetune TASK --model new` has no tokenizer to start from, so it trains one on exactly the
examples it will train on (the same `data.max_train_samples` draw), every text field of them:
both sides of a translation pair, document and summary, question and context, the words of a
tagged sentence. The order is the data's, so the same data gives the same tokenizer.
"""

from __future__ import annotations

import datasets

from hftk.errors import HftkError
from hftk.data.splits import load_splits
from hftk.tasks.common import column, require_columns, require_split, take


def training_texts(recipe) -> list[str]:
    """Every text field of the training examples of a `FinetuneRecipe`, example by example."""
    data = recipe.data
    train = take(_training_split(recipe), data.max_train_samples, seed=data.train_sample_seed)
    fields = _text_fields(recipe, train)
    texts = [text for row in zip(*fields) for text in row if isinstance(text, str) and text.strip()]
    if not texts:
        raise HftkError(f"the {recipe.task} training data has no text to train a tokenizer on; check data.train_file")
    return texts


def _training_split(recipe) -> datasets.Dataset:
    data = recipe.data
    hint = "a fresh model (--model new) trains its tokenizer on the training data: pass data.train_file"
    if recipe.task == "glue":
        from hftk.tasks.glue import load_glue

        if not data.glue_task:
            raise HftkError("GLUE needs a task: --task cola|sst2|mrpc|qqp|stsb|mnli|qnli|rte|wnli (or data.glue_task)")
        raw = load_glue(data.glue_task, train_file=data.train_file)
    elif recipe.task == "qa":
        from hftk.tasks.qa import _load_qa

        raw = _load_qa(data.dataset_name, data.dataset_config, data.train_file, None, None)
    else:
        raw = load_splits(dataset_name=data.dataset_name, dataset_config=data.dataset_config, data_files={"train": data.train_file})
    return require_split(raw, "train", hint)


def _text_fields(recipe, train: datasets.Dataset) -> list[list]:
    """The task's text columns of `train`, each as a list (one entry per example)."""
    data, task = recipe.data, recipe.task
    if task == "translation":
        from hftk.tasks.seq2seq import translation_pairs

        if not data.source_lang or not data.target_lang:
            raise HftkError("translation needs data.source_lang and data.target_lang (e.g. --set data.source_lang=es --set data.target_lang=en)")
        pairs = translation_pairs(train, "train", data.source_lang, data.target_lang)
        return [column(pairs, "source"), column(pairs, "target")]
    if task == "ner":
        require_columns(train, [data.tokens_column], "train")
        return [[" ".join(words) for words in column(train, data.tokens_column)]]
    if task == "glue":
        from hftk.tasks.glue import GLUE_TASKS

        spec = GLUE_TASKS[data.glue_task]
        names = [spec.sentence1_key, spec.sentence2_key]
    elif task == "qa":
        names = ["question", "context"]
    elif task == "classification":
        names = [data.text_column or "text", data.text_pair_column]
    else:  # generation, summarization
        names = [data.source_column, data.target_column]
    names = [name for name in names if name]
    require_columns(train, names, "train")
    return [column(train, name) for name in names]
