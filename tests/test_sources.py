import json

import pytest

from babyllama.data.sources import ReadStats, iter_corpus, read_documents, resolve_corpus
from babyllama.errors import BabyLlamaError


def test_tinystories_txt_splits_on_endoftext(tinystories):
    docs = list(read_documents(tinystories / "valid.txt"))
    assert len(docs) == 220  # the README of the shared data says so
    assert all("<|endoftext|>" not in d and d == d.strip() for d in docs)


def test_txt_and_jsonl_copies_give_the_same_documents(tinystories):
    txt = list(read_documents(tinystories / "valid.txt"))
    jsonl = list(read_documents(tinystories / "jsonl" / "valid.jsonl"))
    assert txt == jsonl


def test_folder_finds_valid_file_and_ignores_subfolders(tinystories):
    corpus = resolve_corpus(str(tinystories))
    assert [p.name for p in corpus.train] == ["train.txt"]
    assert [p.name for p in corpus.valid] == ["valid.txt"]


def test_single_file_finds_valid_twin(tinystories):
    corpus = resolve_corpus(str(tinystories / "jsonl" / "train.jsonl"))
    assert [p.name for p in corpus.valid] == ["valid.jsonl"]


def test_glob_and_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for i in range(2):
        pq.write_table(pa.table({"story": [f"doc {i}-{j}" for j in range(3)]}), tmp_path / f"part{i}.parquet")
    corpus = resolve_corpus(str(tmp_path / "part*.parquet"))
    assert [p.name for p in corpus.train] == ["part0.parquet", "part1.parquet"] and corpus.valid == []
    docs = list(iter_corpus(corpus.train, text_field="story"))
    assert docs == [f"doc {i}-{j}" for i in range(2) for j in range(3)]
    with pytest.raises(BabyLlamaError, match="no column 'text'.*--text_field"):
        list(iter_corpus(corpus.train))


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n{not json\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(BabyLlamaError, match=r"bad.jsonl, line 2: not valid JSON"):
        list(read_documents(path))
    stats = ReadStats()
    assert list(read_documents(path, skip_bad_lines=True, stats=stats)) == ["fine"]
    assert stats.bad_lines == 2


def test_text_field_choice(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"body": "hello"}) + "\n")
    assert list(read_documents(path, text_field="body")) == ["hello"]


def test_plain_text_without_separators_splits_paragraphs(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("first para\nline two\n\n\nsecond para\n")
    assert list(read_documents(path)) == ["first para\nline two", "second para"]


def test_invalid_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"ok line\n\xff\xfe broken\n")
    with pytest.raises(BabyLlamaError, match=r"bin.txt, line 2: invalid UTF-8"):
        list(read_documents(path))


def test_hub_offline_fails_fast_with_local_hint(monkeypatch, tmp_path):
    import time

    from babyllama.data.prepare import PrepareConfig, prepare

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BABYLLAMA_HUB_MIRROR", raising=False)
    started = time.time()
    with pytest.raises(BabyLlamaError, match="--data ../shared/data/tinystories"):
        prepare(PrepareConfig(data="tinystories", out=str(tmp_path / "out"), disable_tqdm=True), log=lambda _: None)
    assert time.time() - started < 10 and not (tmp_path / "out").exists()


def test_missing_path_is_a_clear_error():
    with pytest.raises(BabyLlamaError, match="not a file, folder or glob"):
        resolve_corpus("/no/such/corpus")
