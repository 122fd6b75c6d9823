"""load_text_corpus: every file format, directories, held-out validation, and each user error."""

from __future__ import annotations

import gzip
import json

import datasets
import pytest

from hftk.data.corpus import default_corpus_path, load_text_corpus
from hftk.errors import HftkError

from .conftest import PRETRAIN

LINES = ["It is a truth universally acknowledged,", "", "   ", "that a single man in possession", "of a good fortune,", "\t", "must be in want of a wife."]
NON_BLANK = [line for line in LINES if line.strip()]


def rows(corpus: datasets.DatasetDict) -> list[str]:
    """All rows, train then validation; both splits must keep corpus order, so sorting by origin is not needed."""
    return corpus["train"]["text"][:] + corpus["validation"]["text"][:]


def assert_split_of(corpus: datasets.DatasetDict, expected: list[str]) -> None:
    train, validation = list(corpus["train"]["text"]), list(corpus["validation"]["text"])
    assert sorted(train + validation) == sorted(expected)
    assert len(validation) >= 1
    # Each split is a subsequence of the corpus in its original order.
    for split in (train, validation):
        remaining = iter(expected)
        assert all(any(text == candidate for candidate in remaining) for text in split)
    assert corpus["train"].column_names == ["text"] and corpus["validation"].column_names == ["text"]


def write(path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def test_default_corpus_is_the_vendored_austen(tmp_path):
    path = default_corpus_path()
    assert path.name == "austen.txt.gz" and path.is_file()
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        expected = [line.rstrip("\n") for line in handle if line.strip()]
    corpus = load_text_corpus(cache_dir=str(tmp_path))
    assert len(expected) == 10298
    # 5% of 10,298 rows, rounded: 515.
    assert len(corpus["validation"]) == 515 and len(corpus["train"]) == 10298 - 515
    assert corpus["train"][0]["text"] == expected[0] == "EMMA"
    assert sorted(rows(corpus)) == sorted(expected)


def test_txt_drops_blank_lines_and_gz_reads_the_same(tmp_path):
    text = "\n".join(LINES) + "\n"
    plain = load_text_corpus(write(tmp_path / "a.txt", text), validation_split_percentage=20, cache_dir=str(tmp_path / "c"))
    gz_path = tmp_path / "a.txt.gz"
    gz_path.write_bytes(gzip.compress(text.encode()))
    packed = load_text_corpus(gz_path, validation_split_percentage=20, cache_dir=str(tmp_path / "c"))
    assert_split_of(plain, NON_BLANK)
    assert rows(packed) == rows(plain)
    # 20% of 4 lines = 0.8 -> 1 held out.
    assert len(plain["validation"]) == 1


def test_jsonl_json_csv_parquet_pick_the_text_column(tmp_path):
    records = [{"id": i, "body": text, "label": i % 2} for i, text in enumerate(NON_BLANK + [""])]
    write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    write(tmp_path / "c.json", json.dumps(records))
    datasets.Dataset.from_list(records).to_csv(str(tmp_path / "c.csv"), index=False)
    datasets.Dataset.from_list(records).to_parquet(str(tmp_path / "c.parquet"))
    for name in ("c.jsonl", "c.json", "c.csv", "c.parquet"):
        corpus = load_text_corpus(tmp_path / name, text_column="body", validation_split_percentage=25, cache_dir=str(tmp_path / "cache"))
        assert_split_of(corpus, NON_BLANK)


def test_csv_numbers_in_text_column_become_strings(tmp_path):
    path = write(tmp_path / "n.csv", "text,x\n1,a\n2,b\n3,c\n")
    corpus = load_text_corpus(path, cache_dir=str(tmp_path / "c"))
    assert sorted(rows(corpus)) == ["1", "2", "3"]


def test_directory_is_read_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "corpus"
    write(root / "b" / "2.txt", "two\n")
    write(root / "a" / "1.txt.gz", gzip.compress(b"one\n"))
    write(root / "b" / "3.jsonl", '{"text": "three"}\n')
    write(root / "c" / "4.txt", "four\n\nfive\n")
    write(root / "README.md", "# not a corpus file\n")
    write(root / ".hidden" / "x.txt", "hidden\n")
    corpus = load_text_corpus(root, validation_files=[write(tmp_path / "val.txt", "held\nout\n")], cache_dir=str(tmp_path / "c"))
    assert corpus["train"]["text"][:] == ["one", "two", "three", "four", "five"]
    assert corpus["validation"]["text"][:] == ["held", "out"]


def test_several_sources_are_concatenated_in_order(tmp_path):
    a, b = write(tmp_path / "a.txt", "a1\na2\n"), write(tmp_path / "b.txt", "b1\n")
    corpus = load_text_corpus([b, a], validation_files=b, cache_dir=str(tmp_path / "c"))
    assert corpus["train"]["text"][:] == ["b1", "a1", "a2"]


def test_held_out_split_size_seed_and_order(tmp_path):
    lines = PRETRAIN.joinpath("brown.txt").read_text(encoding="utf-8").splitlines()[:400]
    path = write(tmp_path / "brown.txt", "\n".join(lines) + "\n")
    expected = [line for line in lines if line.strip()]
    cache = str(tmp_path / "c")
    first = load_text_corpus(path, validation_split_percentage=10, seed=1, cache_dir=cache)
    again = load_text_corpus(path, validation_split_percentage=10, seed=1, cache_dir=cache)
    other = load_text_corpus(path, validation_split_percentage=10, seed=2, cache_dir=cache)
    assert len(first["validation"]) == round(len(expected) * 0.10) == 40
    assert_split_of(first, expected)
    assert first["validation"]["text"][:] == again["validation"]["text"][:]
    assert first["validation"]["text"][:] != other["validation"]["text"][:]
    # Tiny corpus: the held-out split still gets one row and the training split keeps the rest.
    two = load_text_corpus(write(tmp_path / "two.txt", "x\ny\n"), validation_split_percentage=1, cache_dir=cache)
    assert (len(two["train"]), len(two["validation"])) == (1, 1)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("missing.txt", None, r"missing\.txt does not exist"),
        ("notes.docx", b"PK\x03\x04", r"unsupported corpus file type 'notes\.docx'"),
        ("blank.txt", "\n  \n\t\n", r"blank\.txt is empty \(0 non-empty lines\)"),
        ("zeros.txt", b"abc\x00\x00\x01def\n", r"zeros\.txt looks binary"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me\n".encode("latin-1"), r"latin1\.txt is not UTF-8 \(bad byte at offset 3\)"),
        ("fake.parquet", "text\nhello\n", r"fake\.parquet is not a Parquet file"),
        ("broken.txt.gz", b"not gzip at all", r"cannot read .*broken\.txt\.gz"),
        ("one.txt", "only one line\n", r"only 1 non-empty line"),
    ],
)
def test_file_errors_are_one_line_and_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(HftkError, match=match) as error:
        load_text_corpus(path, cache_dir=str(tmp_path / "c"))
    assert "\n" not in str(error.value)


def test_non_utf8_after_the_sniffed_head_is_still_a_clear_error(tmp_path):
    path = write(tmp_path / "late.txt", b"a" * 80 + b"\n" + b"plain line\n" * 110_000 + b"caf\xe9\n")
    with pytest.raises(HftkError, match=r"could not read text corpus .*late\.txt \(UnicodeDecodeError"):
        load_text_corpus(path, cache_dir=str(tmp_path / "c"))


def test_missing_text_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "r.jsonl", '{"review": "good", "stars": 5}\n')
    with pytest.raises(HftkError, match=r"r\.jsonl has no column 'text' \(columns: review, stars\): set data\.text_column"):
        load_text_corpus(path, cache_dir=str(tmp_path / "c"))


def test_directory_without_supported_files(tmp_path):
    write(tmp_path / "d" / "notes.md", "hello\n")
    with pytest.raises(HftkError, match=r"no supported corpus files in directory .*d: add files ending in \.txt"):
        load_text_corpus(tmp_path / "d")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HftkError, match="no supported corpus files"):
        load_text_corpus(tmp_path / "empty")


def test_bad_arguments(tmp_path):
    path = write(tmp_path / "a.txt", "a\nb\n")
    with pytest.raises(HftkError, match="not both"):
        load_text_corpus(path, dataset_name="wikitext")
    for percentage in (0, 100, -5):
        with pytest.raises(HftkError, match=r"validation_split_percentage must be in \(0, 100\)"):
            load_text_corpus(path, validation_split_percentage=percentage)


def test_dataset_name_path_uses_its_splits_or_holds_out(tmp_path):
    # `load_dataset` also takes a local folder as the name: the Hub code path, tested offline.
    repo = tmp_path / "repo"
    write(repo / "train.jsonl", "".join(json.dumps({"content": t}) + "\n" for t in ["a one", "", "a two", "a three"]))
    write(repo / "validation.jsonl", json.dumps({"content": "v one"}) + "\n")
    corpus = load_text_corpus(dataset_name=str(repo), text_column="content", cache_dir=str(tmp_path / "c"))
    assert corpus["train"]["text"][:] == ["a one", "a two", "a three"]
    assert corpus["validation"]["text"][:] == ["v one"]
    (repo / "validation.jsonl").unlink()
    held = load_text_corpus(dataset_name=str(repo), text_column="content", validation_split_percentage=30, cache_dir=str(tmp_path / "c2"))
    assert_split_of(held, ["a one", "a two", "a three"])
    with pytest.raises(HftkError, match=r"has no column 'text' \(columns: content\)"):
        load_text_corpus(dataset_name=str(repo), cache_dir=str(tmp_path / "c3"))


def test_unreachable_hub_dataset_is_a_clear_error(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1, so this fails fast without network, as it would for a typo online.
    with pytest.raises(HftkError, match=r"could not load Hub dataset 'nobody/no-such-corpus'.*check the name/config and your network"):
        load_text_corpus(dataset_name="nobody/no-such-corpus", cache_dir=str(tmp_path))


def test_validation_file_errors_name_the_validation_option(tmp_path):
    train = write(tmp_path / "a.txt", "a\nb\n")
    with pytest.raises(HftkError, match=r"gone\.txt does not exist: check the path \(data\.validation_files\)"):
        load_text_corpus(train, validation_files=tmp_path / "gone.txt", cache_dir=str(tmp_path / "c"))
    with pytest.raises(HftkError, match=r"empty \(0 non-empty lines\): add text or point data\.validation_files elsewhere"):
        load_text_corpus(train, validation_files=write(tmp_path / "v.txt", "\n\n"), cache_dir=str(tmp_path / "c"))


def test_translation_rows_give_each_side_as_text(tmp_path):
    pairs = [{"translation": {"es": f"hola {i}", "en": f"hello {i}"}} for i in range(20)]
    path = write(tmp_path / "pairs.jsonl", "".join(json.dumps(pair) + "\n" for pair in pairs))
    both = load_text_corpus([path], validation_split_percentage=10)  # no `text` column: the translation column
    assert sorted(rows(both)) == sorted(text for pair in pairs for text in pair["translation"].values())
    assert rows(load_text_corpus([path], text_column="translation", validation_split_percentage=10)) == rows(both)
    spanish = load_text_corpus([path], text_column="translation.es", validation_split_percentage=10)
    assert sorted(rows(spanish)) == sorted(pair["translation"]["es"] for pair in pairs)
    with pytest.raises(HftkError, match="no 'fr' side in its translation column \\(it has es, en\\)"):
        load_text_corpus([path], text_column="translation.fr")
