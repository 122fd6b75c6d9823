"""The fine-tuning tasks, once: name -> task module, shipped recipe, metrics, head kind and Auto class.

The CLI, the recipe schemas, the `hftk run` pipeline, `hftk.tasks`, distillation and the tests
read this table. It lives with the recipes (below the task modules) and imports nothing
heavy, so recipe validation and `hftk --help` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["sequence_classification", "question_answering", "token_classification", "causal_lm", "seq2seq_lm"]

# The transformers Auto class whose head fits each kind of task.
AUTO_MODEL_CLASSES: dict[str, str] = {
    "sequence_classification": "AutoModelForSequenceClassification",
    "question_answering": "AutoModelForQuestionAnswering",
    "token_classification": "AutoModelForTokenClassification",
    "causal_lm": "AutoModelForCausalLM",
    "seq2seq_lm": "AutoModelForSeq2SeqLM",
}


@dataclass(frozen=True)
class TaskSpec:
    """One `hftk finetune TASK`."""

    name: str
    module: str  # the hftk.tasks module holding `prepare`
    prepare: str  # its function that builds the TaskData
    kind: TaskKind
    metrics: tuple[str, ...]  # hftk's offline `evaluate` modules (hftk/metrics) it scores with
    default_max_seq_length: int  # data.max_seq_length left null (the HF example scripts' defaults), before the model's limit
    distillable: bool = False  # `hftk distill TASK`

    @property
    def recipe(self) -> str:
        """The shipped recipe `hftk finetune TASK` runs by default."""
        return f"finetune-{self.name}"

    @property
    def auto_class(self) -> str:
        return AUTO_MODEL_CLASSES[self.kind]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("glue", "hftk.tasks.glue", "prepare_glue", "sequence_classification", ("glue",), 128, distillable=True),
        TaskSpec(
            "classification", "hftk.tasks.classification", "prepare_classification", "sequence_classification",
            ("accuracy", "f1", "glue"), 128, distillable=True,
        ),
        TaskSpec("qa", "hftk.tasks.qa", "prepare_qa", "question_answering", ("squad", "squad_v2"), 384, distillable=True),
        TaskSpec("ner", "hftk.tasks.ner", "prepare_ner", "token_classification", ("seqeval",), 128, distillable=True),
        TaskSpec("generation", "hftk.tasks.generation", "prepare_generation", "causal_lm", ("rouge", "bleu"), 256),
        TaskSpec("translation", "hftk.tasks.seq2seq", "prepare_translation", "seq2seq_lm", ("bleu", "chrf"), 128),
        TaskSpec("summarization", "hftk.tasks.seq2seq", "prepare_summarization", "seq2seq_lm", ("rouge", "bleu"), 512),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
SEQ2SEQ_TASKS: tuple[str, ...] = tuple(name for name, spec in TASKS.items() if spec.kind == "seq2seq_lm")
DISTILL_TASKS: tuple[str, ...] = tuple(name for name, spec in TASKS.items() if spec.distillable)

TaskName = Literal[TASK_NAMES]  # type: ignore[valid-type]
DistillTaskName = Literal[DISTILL_TASKS]  # type: ignore[valid-type]
