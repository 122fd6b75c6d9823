"""glue metric: each task's official score, checked against hand computations."""

import pytest

from hftk.errors import HftkError
from hftk.metrics import load_metric


def compute(config_name, predictions, references):
    return load_metric("glue", config_name).compute(predictions=predictions, references=references)


def test_cola_matthews_correlation():
    # predictions [1,1,0,0] vs labels [1,0,0,0]: TP=1 FP=1 TN=2 FN=0
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 2 / sqrt(2*1*3*2) = 1/sqrt(3)
    result = compute("cola", [1, 1, 0, 0], [1, 0, 0, 0])
    assert list(result) == ["matthews_correlation"]
    assert result["matthews_correlation"] == pytest.approx(0.5773502691896258)


def test_cola_all_one_class_is_zero_not_nan():
    # A constant predictor has an undefined correlation; the convention (sklearn, GLUE) is 0.
    assert compute("cola", [1, 1, 1, 1], [1, 0, 1, 0]) == {"matthews_correlation": 0.0}


def test_cola_perfectly_wrong_is_minus_one():
    assert compute("cola", [0, 1, 0], [1, 0, 1])["matthews_correlation"] == pytest.approx(-1.0)


@pytest.mark.parametrize("config_name", ["mrpc", "qqp"])
def test_accuracy_and_f1_tasks(config_name):
    # predictions [1,0,1,1] vs labels [1,1,0,1]: 2 of 4 right -> accuracy 0.5
    # positive class: TP=2 FP=1 FN=1 -> P=2/3 R=2/3 F1=2/3
    result = compute(config_name, [1, 0, 1, 1], [1, 1, 0, 1])
    assert result == pytest.approx({"accuracy": 0.5, "f1": 2 / 3})
    assert list(result) == ["accuracy", "f1"]


@pytest.mark.filterwarnings("ignore:F-score is ill-defined")
def test_f1_without_any_positive_is_zero():
    # No positive label anywhere: F1 of the positive class is undefined and reported as 0.
    result = compute("mrpc", [0, 0, 0], [0, 0, 0])
    assert result == {"accuracy": 1.0, "f1": 0.0}


@pytest.mark.parametrize(
    "config_name", ["sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli"]
)
def test_accuracy_tasks(config_name):
    # 3 of 4 right (the 3-way MNLI labels go through the same code)
    assert compute(config_name, [0, 1, 2, 2], [0, 1, 1, 2]) == {"accuracy": 0.75}


def test_stsb_pearson_and_spearman_on_float_scores():
    # x = [1,2,3,4], y = [1,3,2,10]
    # Pearson: dx = [-1.5,-.5,.5,1.5], dy = [-3,-1,-2,6]; cov = 4.5+.5-1+9 = 13;
    #          Sxx = 5, Syy = 50 -> r = 13 / sqrt(250) = 0.8221921916437787
    # Spearman: ranks y = [1,3,2,4], d = [0,-1,1,0], rho = 1 - 6*2 / (4*(16-1)) = 0.8
    result = compute("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 10.0])
    assert list(result) == ["pearson", "spearmanr"]
    assert result["pearson"] == pytest.approx(13 / 250**0.5, abs=1e-6)
    assert result["spearmanr"] == pytest.approx(0.8, abs=1e-6)


def test_stsb_keeps_fractional_predictions():
    # Scores 0.5 apart would collapse if they were stored as ints: [0.5, 1.0, 1.5] is a perfect line.
    result = compute("stsb", [0.5, 1.0, 1.5], [1.0, 2.0, 3.0])
    assert result == pytest.approx({"pearson": 1.0, "spearmanr": 1.0}, abs=1e-12)


def test_add_batch_accumulates_like_one_compute():
    metric = load_metric("glue", "mrpc")
    metric.add_batch(predictions=[1, 0], references=[1, 1])
    metric.add_batch(predictions=[1, 1], references=[0, 1])
    assert metric.compute() == pytest.approx({"accuracy": 0.5, "f1": 2 / 3})


def test_unknown_config_is_a_clear_error():
    with pytest.raises(HftkError, match="'sst-2'.*sst2"):
        load_metric("glue", "sst-2")


def test_missing_config_is_a_clear_error():
    with pytest.raises(HftkError, match="no config_name"):
        load_metric("glue")
