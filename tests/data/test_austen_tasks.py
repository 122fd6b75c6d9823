"""The data sets hftk cuts from its shipped Austen corpus for `pipeline-tiny` (hftk.data.austen_tasks)."""

from __future__ import annotations

import gzip
import re
from collections import Counter

import pytest

from hftk.data import austen_tasks
from hftk.data.corpus import default_corpus_path
from hftk.errors import HftkError


@pytest.fixture(scope="module")
def corpus_by_novel() -> dict[str, str]:
    """The corpus text of each novel, cut at its title line (found here independently of the module)."""
    lines = gzip.open(default_corpus_path(), "rt", encoding="utf-8").read().splitlines()
    starts = {line.strip().lower(): index for index, line in enumerate(lines) if line.strip().lower() in {n.lower() for n in austen_tasks.NOVELS}}
    assert len(starts) == 6
    order = sorted(starts.items(), key=lambda item: item[1]) + [("", len(lines))]
    titles = {n.lower(): n for n in austen_tasks.NOVELS}
    return {titles[name]: "\n".join(lines[start:order[i + 1][1]]) for i, (name, start) in enumerate(order[:-1])}


def test_novels_rows_come_from_the_novel_they_are_labelled_with_and_the_splits_do_not_overlap(corpus_by_novel):
    train, test = (austen_tasks.rows(f"hftk-data:austen-novels/{split}.jsonl") for split in ("train", "test"))
    assert len(train) == 600 and len(test) == 150
    assert Counter(row["label"] for row in test) == {novel: 25 for novel in austen_tasks.NOVELS}
    for row in [*train, *test]:
        assert row["text"] in corpus_by_novel[row["label"]], row
        assert sum(row["text"] in text for text in corpus_by_novel.values()) == 1
    assert not {row["text"] for row in train} & {row["text"] for row in test}


def test_cloze_answers_point_into_the_context_and_a_tenth_have_none():
    for split, size in (("train", 600), ("test", 150)):
        rows = austen_tasks.rows(f"hftk-data:austen-cloze/{split}.jsonl")
        assert len(rows) >= size * 0.95 and len({row["id"] for row in rows}) == len(rows)
        unanswerable = [row for row in rows if not row["answers"]["text"]]
        assert 0.05 <= len(unanswerable) / len(rows) <= 0.12
        for row in rows:
            assert re.search(r"(?<![A-Za-z])who(?![A-Za-z])", row["question"]) and set(row) == {"id", "title", "context", "question", "answers"}
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
                assert row["context"][start:start + len(text)] == text and text[0].isupper()
                # the question is a sentence of the paragraph with the name taken out
                assert any(
                    row["question"][:m.start()] + text + row["question"][m.end():] in row["context"]
                    for m in re.finditer(r"(?<![A-Za-z])who(?![A-Za-z])", row["question"])
                ), row


def test_names_tags_person_names_only():
    rows = austen_tasks.rows("hftk-data:austen-names/train.jsonl")
    assert len(rows) == 600
    tagged, untagged = Counter(), Counter()
    for row in rows:
        assert len(row["tokens"]) == len(row["ner_tags"]) and set(row["ner_tags"]) <= {"O", "B-PER", "I-PER"}
        for previous, tag in zip(["O", *row["ner_tags"]], row["ner_tags"]):
            assert tag != "I-PER" or previous in ("B-PER", "I-PER")  # valid BIO
        for token, tag in zip(row["tokens"], row["ner_tags"]):
            (tagged if tag != "O" else untagged)[token] += 1
    assert sum(1 for row in rows if "B-PER" in row["ner_tags"]) >= 400
    for name in ("Elizabeth", "Emma", "Anne", "Darcy", "Mr."):
        assert tagged[name] > 0, name
    for word in ("the", "London", "Dear", "she", "Chapter"):
        assert tagged[word] == 0, word


def test_generated_sets_are_the_same_every_time(tmp_path):
    first = {name: austen_tasks.rows(f"hftk-data:{name}/test.jsonl") for name in austen_tasks.SETS}
    austen_tasks._make.cache_clear()
    austen_tasks._chapters.cache_clear()
    austen_tasks._name_words.cache_clear()
    assert {name: austen_tasks.rows(f"hftk-data:{name}/test.jsonl") for name in austen_tasks.SETS} == first
    path = austen_tasks.write("hftk-data:austen-names/test.jsonl", tmp_path)
    assert path == tmp_path / "austen-names" / "test.jsonl" and len(path.read_text().splitlines()) == 150


@pytest.mark.parametrize("name", ["hftk-data:austen-novel/train.jsonl", "hftk-data:austen-novels/dev.jsonl"])
def test_an_unknown_generated_name_is_a_one_line_error(name):
    with pytest.raises(HftkError, match="unknown generated data set") as error:
        austen_tasks.parse(name)
    assert "\n" not in str(error.value) and "hftk-data:austen-novels/train.jsonl" in str(error.value)
