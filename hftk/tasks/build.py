"""A task's `TaskData` from a fine-tuning recipe: the recipe's data options handed to the task's `prepare_*`."""

from __future__ import annotations

from hftk.data.splits import DataSource
from hftk.errors import HftkError
from hftk.recipe import FinetuneRecipe
from hftk.tasks import TaskData, get_task
from hftk.recipe.tasks import SEQ2SEQ_TASKS


def model_labels(config) -> list[str]:
    """The label names of a fine-tuned head, by id (what `hftk evaluate` must score against)."""
    return [config.id2label[i] for i in range(config.num_labels)]


def build_task(recipe: FinetuneRecipe, tokenizer, config=None) -> TaskData:
    """Call the task's `prepare_*` with the recipe's data options.

    With `config` (evaluation of a fine-tuned model) the label set is the model's own, not one
    re-read from training data that may be absent or ordered differently.
    """
    data = recipe.data
    source = DataSource.from_recipe(data)
    common = source.keywords(hub=False)
    hub = {"dataset_name": source.dataset_name, "dataset_config": source.dataset_config}
    if recipe.task == "glue":
        if not data.glue_task:
            raise HftkError("GLUE needs a task: --task cola|sst2|mrpc|qqp|stsb|mnli|qnli|rte|wnli (or data.glue_task)")
        return get_task("glue")(data.glue_task, tokenizer, max_seq_length=data.max_seq_length, **common)
    if recipe.task == "classification":
        labels = {}
        if config is not None:
            from hftk.tasks.classification import REGRESSION, SINGLE, LabelSpace

            problem_type = config.problem_type or (REGRESSION if config.num_labels == 1 else SINGLE)
            names = () if problem_type == REGRESSION else tuple(model_labels(config))
            labels["label_space"] = LabelSpace(problem_type, names, {n: i for i, n in enumerate(names)} or None)
        return get_task("classification")(
            tokenizer,
            **hub,
            **common,
            text_column=data.text_column or "text",
            text_pair_column=data.text_pair_column,
            label_column=data.label_column,
            max_seq_length=data.max_seq_length,
            **labels,
        )
    if recipe.task == "qa":
        return get_task("qa")(
            tokenizer,
            **hub,
            **common,
            version_2_with_negative=data.version_2_with_negative,
            max_seq_length=data.max_seq_length,
            doc_stride=data.doc_stride,
            n_best_size=data.n_best_size,
            max_answer_length=data.max_answer_length,
            null_score_diff_threshold=data.null_score_diff_threshold,
        )
    if recipe.task == "ner":
        return get_task("ner")(
            tokenizer,
            **hub,
            **common,
            tokens_column=data.tokens_column,
            tags_column=data.tags_column,
            label_all_tokens=data.label_all_tokens,
            max_seq_length=data.max_seq_length,
            label_names=model_labels(config) if config is not None else None,
        )
    if recipe.task in SEQ2SEQ_TASKS:
        seq2seq = dict(source_prefix=data.source_prefix, max_seq_length=data.max_seq_length, max_target_length=data.max_target_length)
        if recipe.task == "translation":
            return get_task("translation")(tokenizer, **hub, **common, **seq2seq, source_lang=data.source_lang, target_lang=data.target_lang)
        return get_task("summarization")(tokenizer, **hub, **common, **seq2seq, source_column=data.source_column, target_column=data.target_column)
    extra = {"prompt_template": data.prompt_template} if data.prompt_template else {}
    return get_task("generation")(
        tokenizer,
        **hub,
        **common,
        source_column=data.source_column,
        target_column=data.target_column,
        max_seq_length=data.max_seq_length,
        max_new_tokens=recipe.generation.max_new_tokens,
        **extra,
    )
