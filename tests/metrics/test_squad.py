"""squad (v1.1) metric: official normalisation and EM/F1, checked against hand computations."""

import pytest

from hftk.errors import HftkError
from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def squad():
    return load_metric("squad")


def score(squad, prediction, answers):
    predictions = [{"id": "q", "prediction_text": prediction}]
    references = [{"id": "q", "answers": {"text": answers, "answer_start": [0] * len(answers)}}]
    return squad.compute(predictions=predictions, references=references)


def test_exact_answer(squad):
    assert score(squad, "1976", ["1976"]) == {"exact_match": 100.0, "f1": 100.0}


@pytest.mark.parametrize(
    "prediction",
    [
        "The Eiffel Tower!",  # case, article, punctuation
        "  eiffel \t  tower ",  # whitespace
        "an  'Eiffel' tower.",  # article, quotes, full stop
    ],
)
def test_normalisation_of_case_articles_punctuation_whitespace(squad, prediction):
    assert score(squad, prediction, ["eiffel tower"]) == {"exact_match": 100.0, "f1": 100.0}


def test_punctuation_is_deleted_not_turned_into_space(squad):
    # "Eiffel-Tower" -> "eiffeltower": one token, no overlap with "eiffel tower"
    assert score(squad, "Eiffel-Tower", ["eiffel tower"]) == {"exact_match": 0.0, "f1": 0.0}


def test_articles_only_as_whole_words(squad):
    # "a"/"an"/"the" inside words stay: "theatre" and "banana" are untouched
    assert score(squad, "the theatre", ["Theatre"])["exact_match"] == 100.0
    assert score(squad, "banana", ["bnn"])["exact_match"] == 0.0


def test_partial_overlap_f1(squad):
    # pred "the big red dog" -> [big, red, dog]; gold "a red dog barked" -> [red, dog, barked]
    # common 2: P = 2/3, R = 2/3 -> F1 = 2/3
    result = score(squad, "the big red dog", ["a red dog barked"])
    assert result["exact_match"] == 0.0
    assert result["f1"] == pytest.approx(200 / 3)


def test_repeated_tokens_count_once_per_match(squad):
    # pred [dog, dog, dog] vs gold [dog]: common = min(3, 1) = 1 -> P = 1/3, R = 1 -> F1 = 0.5
    assert score(squad, "dog dog dog", ["dog"])["f1"] == pytest.approx(50.0)


def test_prediction_matching_the_second_gold_answer(squad):
    # "city of paris" is far from "Paris" (F1 = 2*(1/3*1)/(1/3+1) = 0.5) but equals the 2nd gold
    assert score(squad, "City of Paris", ["Paris", "the city of Paris"]) == {"exact_match": 100.0, "f1": 100.0}


def test_max_f1_and_max_em_may_come_from_different_golds(squad):
    # vs "red dog": [red] common 1 -> P=1, R=1/2 -> 2/3; vs "red": exact -> EM 1, F1 1
    assert score(squad, "red", ["red dog", "red"]) == {"exact_match": 100.0, "f1": 100.0}
    # vs "red dog": 2/3; vs "blue red car": P=1, R=1/3 -> 0.5; max = 2/3, no exact match
    result = score(squad, "red", ["red dog", "blue red car"])
    assert result == pytest.approx({"exact_match": 0.0, "f1": 200 / 3})


def test_empty_prediction_scores_zero(squad):
    assert score(squad, "", ["1976"]) == {"exact_match": 0.0, "f1": 0.0}


def test_corpus_average_and_unanswered_questions(squad):
    # q1 exact (1, 1); q2 partial (0, 2/3); q3 has no prediction: (0, 0) but still counted
    # -> EM = 100 * 1/3, F1 = 100 * (1 + 2/3) / 3 = 55.55...
    predictions = [
        {"id": "q1", "prediction_text": "Denver Broncos"},
        {"id": "q2", "prediction_text": "the big red dog"},
        {"id": "extra", "prediction_text": "ignored: not in the references"},
    ]
    references = [
        {"id": "q1", "answers": {"text": ["Denver Broncos"], "answer_start": [177]}},
        {"id": "q2", "answers": {"text": ["a red dog barked"], "answer_start": [0]}},
        {"id": "q3", "answers": {"text": ["1976"], "answer_start": [97]}},
    ]
    result = squad.compute(predictions=predictions, references=references)
    assert result == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (5 / 3) / 3})


def test_unanswerable_reference_points_to_squad_v2(squad):
    with pytest.raises(HftkError, match="squad_v2"):
        score(squad, "", [])
