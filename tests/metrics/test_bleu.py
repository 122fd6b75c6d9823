"""bleu metric (SacreBLEU): n-gram counts, brevity penalty and the score, against hand computations."""

import math

import pytest

from hftk.errors import HftkError
from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def bleu():
    return load_metric("bleu")


def test_perfect_match_is_100(bleu):
    result = bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    assert result["score"] == pytest.approx(100.0)
    assert result["counts"] == result["totals"] == [6, 5, 4, 3]
    assert result["bp"] == 1.0
    assert list(result) == ["score", "counts", "totals", "precisions", "bp", "sys_len", "ref_len"]


def test_disjoint_is_0(bleu):
    result = bleu.compute(predictions=["the cat sat on the mat"], references=[["a dog ran in a park"]])
    assert result["score"] == 0.0
    assert result["counts"] == [0, 0, 0, 0]


def test_partial_match(bleu):
    # pred "the cat sat on the mat" vs ref "the cat sat on a mat"
    # 1-grams: the (clipped to 1), cat, sat, on, mat -> 5/6
    # 2-grams: the cat, cat sat, sat on -> 3/5; 3-grams: the cat sat, cat sat on -> 2/4; 4-grams: 1/3
    # equal lengths -> BP = 1; BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** (1/4)
    result = bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on a mat"]])
    assert result["counts"] == [5, 3, 2, 1]
    assert result["totals"] == [6, 5, 4, 3]
    assert result["precisions"] == pytest.approx([500 / 6, 60.0, 50.0, 100 / 3])
    assert result["score"] == pytest.approx(100 * (1 / 12) ** 0.25)


def test_brevity_penalty(bleu):
    # a correct prefix: all precisions 1, hyp 5 tokens vs ref 6 -> BP = exp(1 - 6/5)
    result = bleu.compute(predictions=["the cat sat on the"], references=[["the cat sat on the mat"]])
    assert (result["sys_len"], result["ref_len"]) == (5, 6)
    assert result["bp"] == pytest.approx(math.exp(-0.2))
    assert result["score"] == pytest.approx(100 * math.exp(-0.2))


def test_several_references_per_prediction(bleu):
    # the second reference matches exactly; its length (6) is the closest -> BP = 1 -> 100
    result = bleu.compute(predictions=["the cat sat on the mat"], references=[["a dog ran", "the cat sat on the mat"]])
    assert result["score"] == pytest.approx(100.0)
    assert result["ref_len"] == 6


def test_one_reference_string_per_prediction(bleu):
    # references as a flat list of strings mean one reference each
    flat = bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on a mat"])
    assert flat["score"] == pytest.approx(100 * (1 / 12) ** 0.25)


def test_corpus_level_counts_are_summed_not_averaged(bleu):
    # perfect 6-token sentence + disjoint 6-token sentence:
    # counts [6,5,4,3] + [0,0,0,0], totals [6,5,4,3] * 2 -> precisions 1/2 each -> BLEU = 50
    result = bleu.compute(
        predictions=["the cat sat on the mat", "one two three four five six"],
        references=[["the cat sat on the mat"], ["a b c d e f"]],
    )
    assert result["counts"] == [6, 5, 4, 3]
    assert result["totals"] == [12, 10, 8, 6]
    assert result["score"] == pytest.approx(50.0)


def test_lowercase_option(bleu):
    cased = bleu.compute(predictions=["The Cat"], references=[["the cat"]])
    lowered = bleu.compute(predictions=["The Cat"], references=[["the cat"]], lowercase=True)
    assert cased["counts"][0] == 0
    assert lowered["counts"] == [2, 1, 0, 0]


def test_uneven_reference_counts_are_a_clear_error(bleu):
    with pytest.raises(HftkError, match="same number of references"):
        bleu.compute(predictions=["a b", "c d"], references=[["a b"], ["c d", "c e"]])


def test_signature_on_request_and_score_unchanged(bleu):
    plain = bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on a mat"]])
    signed = bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on a mat"]], return_signature=True)
    assert signed["score"] == plain["score"]
    assert signed["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
