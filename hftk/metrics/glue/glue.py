"""GLUE benchmark metric: the score each GLUE task is officially reported with.

Same configs, inputs and outputs as the Hub's `glue` metric, so `evaluate.load("glue", "mrpc")`
code works unchanged with `hftk.metrics.load_metric("glue", "mrpc")`.
"""

import datasets
import evaluate
from scipy.stats import pearsonr
from scipy.stats import spearmanr
from sklearn.metrics import f1_score
from sklearn.metrics import matthews_corrcoef

from hftk.errors import HftkError

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  note={In the Proceedings of ICLR.},
  year={2019}
}
"""

_DESCRIPTION = """\
GLUE, the General Language Understanding Evaluation benchmark
(https://gluebenchmark.com/) is a collection of resources for training,
evaluating, and analyzing natural language understanding systems.
Each task is scored as on the official leaderboard: Matthews correlation for CoLA,
accuracy and F1 for MRPC and QQP, Pearson and Spearman correlation for STS-B,
accuracy for the others.
"""

_KWARGS_DESCRIPTION = """
Compute the GLUE score of a task (the task is the config name).
Args:
    predictions: list of predicted labels (ints), or predicted scores (floats) for stsb.
    references: list of gold labels (ints), or gold scores (floats) for stsb.
Returns: depending on the GLUE subset, one or several of:
    "accuracy": Accuracy
    "f1": F1 score of the positive class (label 1)
    "pearson": Pearson Correlation
    "spearmanr": Spearman Correlation
    "matthews_correlation": Matthew Correlation
Examples:
    >>> glue_metric = load_metric("glue", "mrpc")
    >>> glue_metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
    >>> glue_metric = load_metric("glue", "stsb")
    >>> glue_metric.compute(predictions=[0.0, 1.0, 2.0], references=[0.0, 1.0, 2.0])
    {'pearson': 1.0, 'spearmanr': 1.0}
"""

_ACCURACY_TASKS = ["sst2", "mnli", "mnli_mismatched", "mnli_matched", "qnli", "rte", "wnli", "hans", "ax"]
_ACC_F1_TASKS = ["mrpc", "qqp"]
_CONFIGS = ["cola", "stsb"] + _ACC_F1_TASKS + _ACCURACY_TASKS


def simple_accuracy(preds, labels):
    return float((preds == labels).mean())


def acc_and_f1(preds, labels):
    return {"accuracy": simple_accuracy(preds, labels), "f1": float(f1_score(y_true=labels, y_pred=preds))}


def pearson_and_spearman(preds, labels):
    # Inputs are stored as float32 (like the Hub metric); correlate in float64 so a perfect
    # correlation reads 1.0 rather than 0.99999994.
    preds, labels = preds.astype("float64"), labels.astype("float64")
    return {"pearson": float(pearsonr(preds, labels)[0]), "spearmanr": float(spearmanr(preds, labels)[0])}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in _CONFIGS:
            given = "no config_name" if self.config_name == "default" else f"unknown config {self.config_name!r}"
            raise HftkError(
                f"GLUE metric got {given}: pass one of {', '.join(_CONFIGS)} "
                "as config_name, e.g. load_metric('glue', 'mrpc')."
            )
        label_type = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value(label_type), "references": datasets.Value(label_type)}
            ),
            homepage="https://gluebenchmark.com/",
            codebase_urls=[],
            reference_urls=[],
            format="numpy",
        )

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return pearson_and_spearman(predictions, references)
        if self.config_name in _ACC_F1_TASKS:
            return acc_and_f1(predictions, references)
        return {"accuracy": simple_accuracy(predictions, references)}
