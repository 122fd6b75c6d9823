"""squad_v2 metric: official v2 semantics for unanswerable questions and no-answer thresholds.

No-answer probabilities are multiples of 1/8 so they survive the float32 input feature exactly.
"""

import pytest

from hftk.errors import HftkError
from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def squad_v2():
    return load_metric("squad_v2")


def ref(qid, *answers):
    return {"id": qid, "answers": {"text": list(answers), "answer_start": [0] * len(answers)}}


def pred(qid, text, na_prob=0.0):
    return {"id": qid, "prediction_text": text, "no_answer_probability": na_prob}


# q1 answerable, exact                       -> exact 1, f1 1
# q2 answerable, "Carolina" vs [carolina, panthers]: P=1, R=1/2 -> exact 0, f1 2/3
# q3 unanswerable, abstains ("")             -> exact 1, f1 1
# q4 unanswerable, answers anyway            -> exact 0, f1 0
PREDICTIONS = [
    pred("q1", "Denver Broncos", 0.125),
    pred("q2", "Carolina", 0.625),
    pred("q3", "", 0.875),
    pred("q4", "Super Bowl", 0.75),
]
REFERENCES = [ref("q1", "Denver Broncos"), ref("q2", "Carolina Panthers"), ref("q3"), ref("q4")]


def test_mixed_answerable_and_unanswerable(squad_v2):
    result = squad_v2.compute(predictions=PREDICTIONS, references=REFERENCES)
    # Default threshold 1.0: no probability exceeds it, so texts decide.
    # Best threshold sweep (start = 2 unanswerable counted right, then answer in order of na prob):
    #   exact: q1(.125) +1 -> 3 (best, thr .125); q2(.625) +0; q4(.75) -1; q3(.875) 0 -> 75, .125
    #   f1:    q1 +1 -> 3; q2 +2/3 -> 3.67 (best, thr .625); q4 -1; q3 0 -> 100*3.67/4 = 91.67, .625
    expected = {
        "exact": 50.0,
        "f1": 100 * (1 + 2 / 3 + 1 + 0) / 4,
        "total": 4,
        "HasAns_exact": 50.0,
        "HasAns_f1": 100 * (1 + 2 / 3) / 2,
        "HasAns_total": 2,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
        "best_exact": 75.0,
        "best_exact_thresh": 0.125,
        "best_f1": 100 * (3 + 2 / 3) / 4,
        "best_f1_thresh": 0.625,
    }
    assert result == pytest.approx(expected)
    assert list(result) == list(expected)  # same key order as the official script


def test_no_answer_threshold_turns_confident_no_answers_into_abstentions(squad_v2):
    # threshold .5: q2 (.625), q4 (.75), q3 (.875) count as abstentions:
    #   q1 1/1, q2 answerable -> 0/0, q3 unanswerable -> 1/1, q4 unanswerable -> 1/1
    result = squad_v2.compute(predictions=PREDICTIONS, references=REFERENCES, no_answer_threshold=0.5)
    assert result["exact"] == result["f1"] == 75.0
    assert result["HasAns_exact"] == result["HasAns_f1"] == 50.0
    assert result["NoAns_exact"] == result["NoAns_f1"] == 100.0
    # the sweep uses the raw scores and does not depend on the threshold
    assert (result["best_f1"], result["best_f1_thresh"]) == pytest.approx((100 * (3 + 2 / 3) / 4, 0.625))


def test_threshold_is_strict(squad_v2):
    # na prob .75 is not > .75: the answer stands and is wrong on an unanswerable question
    result = squad_v2.compute(predictions=[pred("q4", "Super Bowl", 0.75)], references=[ref("q4")],
                              no_answer_threshold=0.75)
    assert result["exact"] == 0.0


def test_abstaining_on_unanswerable_is_100_answering_is_0(squad_v2):
    right = squad_v2.compute(predictions=[pred("q", "")], references=[ref("q")])
    wrong = squad_v2.compute(predictions=[pred("q", "the moon")], references=[ref("q")])
    assert (right["exact"], right["f1"], right["NoAns_exact"], right["NoAns_total"]) == (100.0, 100.0, 100.0, 1)
    assert (wrong["exact"], wrong["f1"], wrong["NoAns_exact"], wrong["NoAns_total"]) == (0.0, 0.0, 0.0, 1)


def test_empty_groups_are_omitted(squad_v2):
    only_unanswerable = squad_v2.compute(predictions=[pred("q", "")], references=[ref("q")])
    assert not any(key.startswith("HasAns") for key in only_unanswerable)
    only_answerable = squad_v2.compute(predictions=[pred("q", "1976")], references=[ref("q", "1976")])
    assert not any(key.startswith("NoAns") for key in only_answerable)
    assert only_answerable["HasAns_total"] == 1


def test_empty_prediction_on_answerable_is_0(squad_v2):
    result = squad_v2.compute(predictions=[pred("q", "")], references=[ref("q", "1976")])
    assert (result["exact"], result["f1"]) == (0.0, 0.0)


def test_normalisation_and_second_gold_answer(squad_v2):
    # "The Panthers!" -> "panthers" equals the second gold "the Panthers" -> "panthers"
    result = squad_v2.compute(
        predictions=[pred("q", "The Panthers!")], references=[ref("q", "Carolina Panthers", "the Panthers")]
    )
    assert (result["exact"], result["f1"]) == (100.0, 100.0)


def test_hub_docstring_example(squad_v2):
    predictions = [{"prediction_text": "1976", "id": "56e10a3be3433e1400422b22", "no_answer_probability": 0.0}]
    references = [{"answers": {"answer_start": [97], "text": ["1976"]}, "id": "56e10a3be3433e1400422b22"}]
    assert squad_v2.compute(predictions=predictions, references=references) == {
        "exact": 100.0, "f1": 100.0, "total": 1, "HasAns_exact": 100.0, "HasAns_f1": 100.0, "HasAns_total": 1,
        "best_exact": 100.0, "best_exact_thresh": 0.0, "best_f1": 100.0, "best_f1_thresh": 0.0,
    }


def test_missing_prediction_is_a_clear_error(squad_v2):
    with pytest.raises(HftkError, match="'q2'"):
        # (evaluate itself already refuses lists of different lengths)
        squad_v2.compute(predictions=[pred("q1", "x"), pred("q3", "y")], references=[ref("q1", "x"), ref("q2", "y")])
