"""f1 metric: binary and multi-class averages, checked against hand-computed confusion counts."""

import pytest

from hftk.metrics import load_metric

# predictions vs references over 3 classes:
#   class 0: TP=1 FP=0 FN=0 -> F1 = 1
#   class 1: predicted at 1,4; true at 1,2 -> TP=1 FP=1 FN=1 -> F1 = 2/(2+1+1) = 0.5
#   class 2: predicted at 2,3; true at 3,4 -> TP=1 FP=1 FN=1 -> F1 = 0.5
PREDICTIONS = [0, 1, 2, 2, 1]
REFERENCES = [0, 1, 1, 2, 2]


@pytest.fixture(scope="module")
def f1():
    return load_metric("f1")


def test_binary_f1(f1):
    # TP=2 FP=1 FN=1 -> P = R = 2/3 -> F1 = 2/3
    assert f1.compute(predictions=[1, 0, 1, 1], references=[1, 1, 0, 1]) == pytest.approx({"f1": 2 / 3})


def test_binary_f1_with_other_positive_label(f1):
    # class 0 as positive: TP=0 (the only predicted 0 is a true 1) -> 0
    assert f1.compute(predictions=[1, 0, 1, 1], references=[1, 1, 0, 1], pos_label=0) == {"f1": 0.0}


@pytest.mark.parametrize(
    ("average", "expected"),
    [
        ("macro", (1 + 0.5 + 0.5) / 3),
        ("micro", 3 / 5),  # micro-F1 = accuracy for single-label multi-class
        ("weighted", (1 * 1 + 2 * 0.5 + 2 * 0.5) / 5),  # supports 1, 2, 2
    ],
)
def test_multiclass_averages(f1, average, expected):
    assert f1.compute(predictions=PREDICTIONS, references=REFERENCES, average=average) == pytest.approx(
        {"f1": expected}
    )


def test_per_class_scores_are_a_list_of_floats(f1):
    result = f1.compute(predictions=PREDICTIONS, references=REFERENCES, average=None)
    assert result == {"f1": [1.0, 0.5, 0.5]}
    assert all(type(score) is float for score in result["f1"])


@pytest.mark.filterwarnings("ignore:F-score is ill-defined")
def test_no_positives_at_all_is_zero(f1):
    assert f1.compute(predictions=[0, 0, 0], references=[0, 0, 0]) == {"f1": 0.0}


def test_never_predicting_the_positive_class_is_zero(f1):
    # TP=0 -> precision undefined, recall 0 -> F1 0
    assert f1.compute(predictions=[0, 0, 0], references=[1, 0, 1]) == {"f1": 0.0}
