"""SQuAD v2.0 metric: EM/F1 with unanswerable questions and the best no-answer threshold.

Reimplements the official v2.0 evaluation script with the Hub `squad_v2` metric's inputs and
outputs: an unanswerable question (empty gold answer list) is scored against the empty string,
so abstaining (empty prediction) scores 100 and any answer 0. Questions whose
`no_answer_probability` exceeds `no_answer_threshold` count as abstentions; `best_*` report the
threshold on that probability that would have maximised each score.
"""

import re
import string
from collections import Counter

import datasets
import evaluate

from hftk.errors import HftkError

_CITATION = """\
@inproceedings{Rajpurkar2018SQuAD2,
  title={Know What You Don't Know: Unanswerable Questions for SQuAD},
  author={Pranav Rajpurkar and Robin Jia and Percy Liang},
  booktitle={ACL},
  year={2018}
}
"""

_DESCRIPTION = """
This metric reproduces the official scoring script for version 2 of the Stanford Question
Answering Dataset (SQuAD).

Stanford Question Answering Dataset (SQuAD) is a reading comprehension dataset, consisting of questions posed by
crowdworkers on a set of Wikipedia articles, where the answer to every question is a segment of text, or span,
from the corresponding reading passage, or the question might be unanswerable.

SQuAD2.0 combines the 100,000 questions in SQuAD1.1 with over 50,000 unanswerable questions
written adversarially by crowdworkers to look similar to answerable ones.
To do well on SQuAD2.0, systems must not only answer questions when possible, but also
determine when no answer is supported by the paragraph and abstain from answering.
"""

_KWARGS_DESCRIPTION = """
Computes SQuAD v2 scores (F1 and EM).
Args:
    predictions: List of question-answers dictionaries with the following key-values:
        - 'id': the question-answer 'id' field as given in the references (see below)
        - 'prediction_text': the text of the answer ('' to abstain)
        - 'no_answer_probability': the probability that the question has no answer
    references: List of question-answers dictionaries with the following key-values:
        - 'id': id of the question-answer pair (see above),
        - 'answers': a Dict {'text': list of answer strings (empty if unanswerable), 'answer_start': list of ints}
    no_answer_threshold: float (default 1.0)
        Probability threshold to decide that a question has no answer.
Returns (percentages; the HasAns_*/NoAns_* keys only when that group is non-empty):
    'exact': Exact match (the normalized answer exactly match the gold answer)
    'f1': The F-score of predicted tokens versus the gold answer
    'total': Number of score considered
    'HasAns_exact': Exact match (the normalized answer exactly match the gold answer)
    'HasAns_f1': The F-score of predicted tokens versus the gold answer
    'HasAns_total': Number of score considered
    'NoAns_exact': Exact match (the normalized answer exactly match the gold answer)
    'NoAns_f1': The F-score of predicted tokens versus the gold answer
    'NoAns_total': Number of score considered
    'best_exact': Best exact match (with varying threshold)
    'best_exact_thresh': No-answer probability threshold associated to the best exact match
    'best_f1': Best F1 (with varying threshold)
    'best_f1_thresh': No-answer probability threshold associated to the best F1
Examples:
    >>> predictions = [{'prediction_text': '1976', 'id': '56e10a3be3433e1400422b22', 'no_answer_probability': 0.}]
    >>> references = [{'answers': {'answer_start': [97], 'text': ['1976']}, 'id': '56e10a3be3433e1400422b22'}]
    >>> squad_v2_metric = load_metric("squad_v2")
    >>> squad_v2_metric.compute(predictions=predictions, references=references)
    {'exact': 100.0, 'f1': 100.0, 'total': 1, 'HasAns_exact': 100.0, 'HasAns_f1': 100.0, 'HasAns_total': 1, 'best_exact': 100.0, 'best_exact_thresh': 0.0, 'best_f1': 100.0, 'best_f1_thresh': 0.0}
"""

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text):
    """Lowercase, remove punctuation, articles and extra whitespace (official SQuAD rules)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def get_tokens(text):
    return normalize_answer(text).split() if text else []


def compute_exact(gold, prediction):
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold, prediction):
    gold_tokens = get_tokens(gold)
    prediction_tokens = get_tokens(prediction)
    if not gold_tokens or not prediction_tokens:
        # No-answer on either side: 1 if both abstain, else 0.
        return int(gold_tokens == prediction_tokens)
    num_same = sum((Counter(gold_tokens) & Counter(prediction_tokens)).values())
    if num_same == 0:
        return 0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def get_raw_scores(references, predicted_text):
    """Per-question EM and F1 before thresholding, max over gold answers ("" if unanswerable)."""
    exact_scores, f1_scores = {}, {}
    for reference in references:
        qid = reference["id"]
        gold_answers = [text for text in reference["answers"]["text"] if normalize_answer(text)] or [""]
        prediction = predicted_text[qid]
        exact_scores[qid] = max(compute_exact(gold, prediction) for gold in gold_answers)
        f1_scores[qid] = max(compute_f1(gold, prediction) for gold in gold_answers)
    return exact_scores, f1_scores


def apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    """Questions predicted unanswerable score 1 if they are, else 0."""
    return {
        qid: float(not qid_to_has_ans[qid]) if na_probs[qid] > na_prob_thresh else score
        for qid, score in scores.items()
    }


def make_eval_dict(exact_scores, f1_scores, qid_list):
    total = len(qid_list)
    return {
        "exact": 100.0 * sum(exact_scores[qid] for qid in qid_list) / total,
        "f1": 100.0 * sum(f1_scores[qid] for qid in qid_list) / total,
        "total": total,
    }


def find_best_thresh(predicted_text, scores, na_probs, qid_to_has_ans):
    """Sweep the no-answer threshold over the sorted probabilities, as the official script does.

    Start from "abstain on everything" (score = number of unanswerable questions), then answer
    questions in increasing no-answer probability and keep the best running score.
    """
    current = best = sum(1 for has_ans in qid_to_has_ans.values() if not has_ans)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid_to_has_ans[qid]:
            current += scores[qid]
        elif predicted_text[qid]:
            current -= 1  # answering an unanswerable question loses its abstention point
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SquadV2(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                        "no_answer_probability": datasets.Value("float32"),
                    },
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.features.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
            codebase_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references, no_answer_threshold=1.0):
        predicted_text = {p["id"]: p["prediction_text"] for p in predictions}
        predicted_na_prob = {p["id"]: p["no_answer_probability"] for p in predictions}
        missing = [r["id"] for r in references if r["id"] not in predicted_text]
        if missing:
            raise HftkError(
                f"squad_v2 needs a prediction for every reference; {len(missing)} missing, "
                f"e.g. ids {missing[:3]}: predict '' to abstain."
            )
        # Only referenced questions are scored; extra predictions are ignored.
        na_probs = {r["id"]: predicted_na_prob[r["id"]] for r in references}
        qid_to_has_ans = {r["id"]: bool(r["answers"]["text"]) for r in references}
        has_ans_qids = [qid for qid, has_ans in qid_to_has_ans.items() if has_ans]
        no_ans_qids = [qid for qid, has_ans in qid_to_has_ans.items() if not has_ans]

        exact_raw, f1_raw = get_raw_scores(references, predicted_text)
        exact = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, no_answer_threshold)
        f1 = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, no_answer_threshold)

        results = make_eval_dict(exact, f1, list(exact))
        for prefix, qids in (("HasAns", has_ans_qids), ("NoAns", no_ans_qids)):
            if qids:  # the official script omits an empty group rather than dividing by zero
                results.update({f"{prefix}_{k}": v for k, v in make_eval_dict(exact, f1, qids).items()})
        results["best_exact"], results["best_exact_thresh"] = find_best_thresh(
            predicted_text, exact_raw, na_probs, qid_to_has_ans
        )
        results["best_f1"], results["best_f1_thresh"] = find_best_thresh(
            predicted_text, f1_raw, na_probs, qid_to_has_ans
        )
        return results
