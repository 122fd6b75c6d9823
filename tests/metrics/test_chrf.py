"""chrf metric (SacreBLEU chrF): against a hand computation and against sacrebleu called directly."""

import pytest
import sacrebleu

from hftk.errors import HftkError
from hftk.metrics import load_metric


@pytest.fixture(scope="module")
def chrf():
    return load_metric("chrf")


def test_identical_is_100_and_keys_match_the_hub_metric(chrf):
    result = chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])
    assert result == {"score": pytest.approx(100.0), "char_order": 6, "word_order": 0, "beta": 2}


def test_hand_computed_char_order_2():
    """'ab' vs 'abc' (spaces dropped), orders 1..2, beta 2.

    1-grams: hyp {a,b} ref {a,b,c}: P=2/2, R=2/3; 2-grams: hyp {ab}, ref {ab,bc}: P=1, R=1/2.
    chrF averages P and R over n first: P=1, R=(2/3+1/2)/2=7/12; F2 = 5PR/(4P+R).
    """
    chrf = load_metric("chrf")
    result = chrf.compute(predictions=["ab"], references=[["abc"]], char_order=2)
    precision, recall = 1.0, 7 / 12
    assert result["score"] == pytest.approx(100 * 5 * precision * recall / (4 * precision + recall))


def test_equals_sacrebleu_on_a_corpus_with_two_references(chrf):
    predictions = ["The quick brown fox jumps.", "Hello there, world!", "Nothing matches here"]
    references = [["The fast brown fox jumped.", "A quick brown fox jumps."], ["hello world", "Hello, world!"], ["xyz", "qqq"]]
    streams = [[r[i] for r in references] for i in range(2)]
    for kwargs in ({}, {"word_order": 2}, {"char_order": 3}):
        ours = chrf.compute(predictions=predictions, references=references, **kwargs)["score"]
        assert ours == pytest.approx(sacrebleu.corpus_chrf(predictions, streams, **kwargs).score)


def test_signature_on_request(chrf):
    result = chrf.compute(predictions=["a b"], references=["a b"], word_order=2, return_signature=True)
    assert result["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:")


def test_uneven_references_are_an_hftk_error(chrf):
    with pytest.raises(HftkError, match="same number of references"):
        chrf.compute(predictions=["a", "b"], references=[["a"], ["b", "c"]])
