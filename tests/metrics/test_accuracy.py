"""accuracy metric, checked against hand counts."""

import pytest

from hftk.errors import HftkError
from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def accuracy():
    return load_metric("accuracy")


def test_fraction_of_correct_predictions(accuracy):
    # positions 0, 1, 3 right, position 2 wrong -> 3/4
    assert accuracy.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2]) == {"accuracy": 0.75}


def test_count_and_sample_weight(accuracy):
    assert accuracy.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2], normalize=False) == {"accuracy": 3.0}
    # weights 1,1,6,2 with the weight-6 example wrong: (1+1+2) / 10
    result = accuracy.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2], sample_weight=[1, 1, 6, 2])
    assert result == pytest.approx({"accuracy": 0.4})


def test_all_wrong_and_all_right(accuracy):
    assert accuracy.compute(predictions=[1, 1, 1], references=[0, 0, 0]) == {"accuracy": 0.0}
    assert accuracy.compute(predictions=[1, 1, 1], references=[1, 1, 1]) == {"accuracy": 1.0}


def test_multilabel_is_exact_set_match():
    # example 1 matches exactly, example 2 differs in one label -> 1/2
    metric = load_metric("accuracy", "multilabel")
    assert metric.compute(predictions=[[0, 1], [1, 1]], references=[[0, 1], [1, 0]]) == {"accuracy": 0.5}


def test_unknown_config():
    with pytest.raises(HftkError, match="multilabel"):
        load_metric("accuracy", "multiclass")
