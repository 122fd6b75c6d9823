"""seqeval metric: entity-level scores (not token-level), per type, and strict-mode behaviour."""

import pytest

from hftk.errors import HftkError
from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def seqeval():
    return load_metric("seqeval")


def test_entity_level_scores_differ_from_token_accuracy(seqeval):
    # Gold entities: MISC(3-5) in sentence 1, PER(0-1) in sentence 2.
    # Predicted:     MISC(2-5) (boundary off by one: wrong entity), PER(0-1) (right).
    # Entity level: 1 of 2 predicted right, 1 of 2 gold found -> P = R = F1 = 0.5
    # Token level: sentence 1 gets 5/7 tokens right (positions 2, 3 wrong), sentence 2 gets 3/3 -> 8/10
    predictions = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    references = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    result = seqeval.compute(predictions=predictions, references=references)
    assert result == {
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1},
        "overall_precision": 0.5,
        "overall_recall": 0.5,
        "overall_f1": 0.5,
        "overall_accuracy": 0.8,
    }


def test_precision_and_recall_differ_with_extra_predicted_entities(seqeval):
    # gold: PER(0), LOC(2); predicted: PER(0), LOC(2), ORG(4) -> P = 2/3, R = 1, F1 = 0.8
    # tokens: only position 4 wrong -> accuracy 4/5
    predictions = [["B-PER", "O", "B-LOC", "O", "B-ORG"]]
    references = [["B-PER", "O", "B-LOC", "O", "O"]]
    # ORG has no gold entity, so its recall is 0/0: zero_division=0 says "0" without a warning
    result = seqeval.compute(predictions=predictions, references=references, zero_division=0)
    assert result["overall_precision"] == pytest.approx(2 / 3)
    assert result["overall_recall"] == 1.0
    assert result["overall_f1"] == pytest.approx(0.8)
    assert result["overall_accuracy"] == pytest.approx(0.8)
    assert result["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 0}


def test_default_mode_accepts_entity_starting_with_i_strict_iob2_does_not(seqeval):
    # conlleval (default) treats a leading I-PER as the start of a PER chunk -> it matches gold PER(0-1).
    # Strict IOB2 requires B- first, so no valid entity is predicted -> P = R = F1 = 0.
    predictions = [["I-PER", "I-PER", "O"]]
    references = [["B-PER", "I-PER", "O"]]
    lenient = seqeval.compute(predictions=predictions, references=references)
    strict = seqeval.compute(
        predictions=predictions, references=references, scheme="IOB2", mode="strict", zero_division=0
    )
    assert lenient["overall_f1"] == 1.0
    assert strict["overall_f1"] == 0.0
    # token accuracy ignores the scheme: 2 of 3 tags equal
    assert lenient["overall_accuracy"] == strict["overall_accuracy"] == pytest.approx(2 / 3)


def test_zero_division_value_is_used(seqeval):
    # nothing predicted: precision = 0/0 -> the zero_division value
    result = seqeval.compute(predictions=[["O", "O"]], references=[["B-PER", "O"]], zero_division=1)
    assert result["overall_precision"] == 1.0
    assert result["overall_recall"] == 0.0


def test_unknown_scheme(seqeval):
    with pytest.raises(HftkError, match="IOB2"):
        seqeval.compute(predictions=[["O"]], references=[["O"]], scheme="BIO")
