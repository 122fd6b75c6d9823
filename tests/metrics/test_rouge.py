"""rouge metric: n-gram and LCS F-measures on hand-counted overlaps."""

import pytest

from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def rouge():
    return load_metric("rouge")


def test_known_overlap(rouge):
    # pred "the cat sat on the mat", ref "the cat lay on the mat" (6 tokens each)
    # rouge1: common unigrams the x2, cat, on, mat = 5 -> P = R = 5/6
    # rouge2: bigrams common: "the cat", "on the", "the mat" = 3 of 5 -> 3/5
    # rougeL: LCS "the cat on the mat" = 5 -> 5/6; rougeLsum: one sentence, same
    result = rouge.compute(predictions=["the cat sat on the mat"], references=["the cat lay on the mat"])
    assert result == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6, "rougeLsum": 5 / 6})


def test_lcs_differs_from_bag_of_words(rouge):
    # same words in reverse order: rouge1 = 1, rouge2 = 0 (no bigram in common), LCS length 1 of 3
    result = rouge.compute(predictions=["c b a"], references=["a b c"], rouge_types=["rouge1", "rouge2", "rougeL"])
    assert result == pytest.approx({"rouge1": 1.0, "rouge2": 0.0, "rougeL": 1 / 3})


def test_precision_recall_asymmetry_in_f_measure(rouge):
    # pred "cat" vs ref "the cat sat": P = 1, R = 1/3 -> F = 2 * 1/3 / (4/3) = 0.5
    assert rouge.compute(predictions=["cat"], references=["the cat sat"], rouge_types=["rouge1"]) == {
        "rouge1": pytest.approx(0.5)
    }


def test_stemmer_and_aggregation(rouge):
    # "cats running" vs "cat runs": no common surface token; Porter stems both to "cat run"
    predictions = ["cats running", "hello there"]
    references = ["cat runs", "general kenobi"]
    plain = rouge.compute(predictions=predictions, references=references, rouge_types=["rouge1"], use_aggregator=False)
    stemmed = rouge.compute(
        predictions=predictions, references=references, rouge_types=["rouge1"], use_aggregator=False, use_stemmer=True
    )
    assert plain == {"rouge1": [0.0, 0.0]}
    assert stemmed == {"rouge1": [1.0, 0.0]}
    # aggregate = mean over examples
    assert rouge.compute(predictions=predictions, references=references, use_stemmer=True)["rouge1"] == 0.5


def test_case_and_punctuation_are_ignored(rouge):
    result = rouge.compute(predictions=["Hello, World!"], references=["hello world"], rouge_types=["rouge1"])
    assert result == {"rouge1": 1.0}


def test_multiple_references_take_the_best(rouge):
    # vs "a dog": 0; vs "the cat sat on the mat": exact -> 1
    result = rouge.compute(
        predictions=["the cat sat on the mat"], references=[["a dog", "the cat sat on the mat"]], rouge_types=["rouge1"]
    )
    assert result == {"rouge1": 1.0}


def test_empty_prediction_scores_zero(rouge):
    assert rouge.compute(predictions=[""], references=["the cat"], rouge_types=["rouge1"]) == {"rouge1": 0.0}


def test_custom_tokenizer(rouge):
    # splitting on "|" makes "new york|city" two tokens: "new york", "city" -> one shared of two each -> 0.5
    result = rouge.compute(
        predictions=["new york|city"], references=["new york|town"], rouge_types=["rouge1"],
        tokenizer=lambda text: text.split("|"),
    )
    assert result == {"rouge1": 0.5}
