"""chrF / chrF++ via SacreBLEU: character n-gram F-score (0-100), the Hub `chrf` metric's inputs and outputs.

Wraps `sacrebleu.metrics.CHRF` and returns what the Hub's `chrf` metric returns (`score`,
`char_order`, `word_order`, `beta`) with the same kwargs; `return_signature=True` adds SacreBLEU's
signature string (what a paper should print beside the score). chrF credits partial word matches
(inflections, compounds), so it moves earlier than BLEU in low-resource translation.
"""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

from hftk.errors import HftkError

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
chrF is the F-beta score (beta=2: recall weighs twice) of character n-grams (n = 1..6), averaged
over n, computed on the whole corpus; chrF++ (word_order=2) adds word uni- and bigrams.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the system outputs.
    references (`list` of `list` of `str`, or `list` of `str`): the references of each prediction
        (the same number for each), or one reference string per prediction.
    char_order (`int`): character n-gram order, default 6.
    word_order (`int`): word n-gram order, default 0 (2 gives chrF++).
    beta (`int`): weight of recall over precision, default 2.
    lowercase (`bool`): case-insensitive, default False.
    whitespace (`bool`): keep whitespace in character n-grams, default False.
    eps_smoothing (`bool`): the chrF++.py / NLTK / Moses smoothing instead of SacreBLEU's, default False.
    return_signature (`bool`): also return SacreBLEU's signature string, default False.

Returns:
    'score' (0-100), 'char_order', 'word_order', 'beta' (and 'signature' if asked).

Examples:
    >>> chrf = load_metric("chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU#chrf--chrf",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://aclanthology.org/W15-3049", "https://aclanthology.org/W17-4770"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order: int = CHRF.CHAR_ORDER,
        word_order: int = CHRF.WORD_ORDER,
        beta: int = CHRF.BETA,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
        return_signature: bool = False,
    ):
        references = [[refs] if isinstance(refs, str) else refs for refs in references]
        per_prediction = len(references[0])
        if any(len(refs) != per_prediction for refs in references):
            raise HftkError(
                "chrF needs the same number of references for each prediction: repeat one of the "
                "references of the predictions that have fewer."
            )
        streams = [[refs[i] for refs in references] for i in range(per_prediction)]
        metric = CHRF(char_order, word_order, beta, lowercase, whitespace, eps_smoothing)
        output = metric.corpus_score(predictions, streams)
        result = {"score": output.score, "char_order": output.char_order, "word_order": output.word_order, "beta": output.beta}
        if return_signature:
            result["signature"] = metric.get_signature().format()
        return result
