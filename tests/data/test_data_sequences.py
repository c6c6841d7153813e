"""A text dataset as token rows and document subsets (memlab.data.sequences)."""

from __future__ import annotations

import numpy as np
import pytest

from memlab.data import sequences, text
from memlab.io import MemlabInputError

SMALL = {
    "kind": "text",
    "vocab_size": 120,
    "documents": 201,
    "held_out": 40,
    "facts": 40,
    "entities": 20,
    "values": 8,
    "canary_names": 8,
}
CANARIES = {"per_repetition": 2, "repetitions": [0, 1, 4], "references": 4096}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return sequences.prepare({**SMALL, "canaries": CANARIES}, "t", 0.25, log=lambda m: None)


def test_rows_start_with_bos_and_hold_the_documents_words(arrays):
    tok = text.Tokenizer(tuple(arrays["vocabulary"]))
    assert (arrays["tokens"][:, 0] == text.BOS).all()
    for row, doc in zip(arrays["tokens"][:50], arrays["doc_text"][:50], strict=True):
        assert tok.decode(row[1:]) == doc


def test_a_fact_repeated_k_times_appears_k_times_in_every_subset_that_holds_it(arrays):
    members = sequences.document_subsets(arrays["group"], arrays["doc_kind"], range(8), seed=3)
    fact = arrays["pool_fact"]
    k = arrays["fact_repetitions"]
    assert (np.bincount(fact[fact >= 0], minlength=len(k)) == k).all()
    for row in members:
        held = np.bincount(fact[row & (fact >= 0)], minlength=len(k))
        assert set(np.unique(held[held > 0] - k[held > 0])) <= {0}
    # Canaries likewise: a canary of r repetitions is r rows, all in or all out.
    canary = arrays["pool_canary"]
    reps = arrays["canary_repetitions"]
    for row in members:
        held = np.bincount(canary[row & (canary >= 0)], minlength=len(reps))
        assert ((held == 0) | (held == reps)).all()


def test_subsets_are_complementary_halves_of_equal_size(arrays):
    members = sequences.document_subsets(arrays["group"], arrays["doc_kind"], range(6), seed=0)
    n = members.shape[1]
    assert n % 2 == 0
    assert (members.sum(1) == n // 2).all()
    assert (members[0] ^ members[1]).all() and (members[4] ^ members[5]).all()
    assert (members.sum(0) == 3).all()  # every document in exactly half of the replicas
    # A replica's subset depends on its number only, not on the block it is drawn in.
    alone = sequences.document_subsets(arrays["group"], arrays["doc_kind"], [5], seed=0)
    np.testing.assert_array_equal(alone[0], members[5])
    # Within a stratum of groups, half go to each side of a pair (balanced facts of each k).
    fact, k = arrays["pool_fact"], arrays["fact_repetitions"]
    for size in np.unique(k):
        ids = np.flatnonzero(k == size)
        inside = [bool(members[0][fact == f].any()) for f in ids]
        assert abs(2 * sum(inside) - len(ids)) <= 1


def test_an_odd_pool_drops_one_single_document():
    logs = []
    spec = {**SMALL, "documents": 202, "canaries": CANARIES}
    a = sequences.prepare(spec, "t", 0.25, log=logs.append)
    docs = sequences.documents(spec, "t", 0.25)
    assert len(docs.pool) % 2 == 1 and len(a["tokens"]) == len(docs.pool) - 1
    assert any("dropped pool document" in m for m in logs)


def test_value_and_secret_positions_point_at_the_value_and_the_digits(arrays):
    vocab = arrays["vocabulary"]
    targets = arrays["fact_tokens"][:, 1:]
    values = vocab[targets[np.arange(len(targets)), arrays["fact_position"]]]
    para = arrays["paraphrase_tokens"][:, 1:]
    assert (values == vocab[para[np.arange(len(para)), arrays["paraphrase_position"]]]).all()
    start = int(arrays["secret_start"])
    digits = vocab[arrays["canary_tokens"][:, 1:][:, start : start + 5]]
    assert np.isin(digits, list(text.DIGITS)).all()
    assert vocab[arrays["canary_tokens"][0, start]] == "is"  # the input before the first digit


def test_word_buckets_count_the_pool(arrays):
    tokens = arrays["tokens"][:, 1:]
    counts = np.bincount(tokens.ravel(), minlength=len(arrays["vocabulary"]))
    bucket = arrays["word_bucket"]
    for b, (lo, hi) in enumerate(sequences.WORD_BUCKETS):
        ids = np.flatnonzero(bucket == b)
        assert ((counts[ids] >= lo) & (counts[ids] <= hi)).all()
    assert (bucket[: len(text.SPECIAL_TOKENS)] == -1).all()


def test_a_users_file_is_split_and_long_documents_are_cut(tmp_path):
    lines = [f"w{i} x y" for i in range(30)] + [" ".join(f"long{i}" for i in range(40))]
    (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n")
    logs = []
    spec = {"kind": "text", "path": "docs.txt", "context": 8}
    a = sequences.prepare(spec, "mine", 0.2, root=tmp_path, log=logs.append)
    assert len(a["tokens"]) + len(a["heldout"]) in (30, 31)  # odd pools drop one document
    assert a["tokens"].shape[1] == 8 and set(a["doc_kind"]) == {"document"}
    assert any("longer than 7 words" in m for m in logs)
    assert a["fact_tokens"].shape[0] == 0 and a["canary_tokens"].shape[0] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"one doc\n\nthree\n", "line 2: empty line"),
        (b"one doc\nbad \xff byte\n", "line 2: bytes that are not UTF-8"),
        (b"", "the file is empty"),
    ],
)
def test_a_bad_text_file_names_the_file_and_line(tmp_path, content, message):
    (tmp_path / "docs.txt").write_bytes(content)
    with pytest.raises(MemlabInputError, match=message):
        sequences.prepare({"kind": "text", "path": "docs.txt"}, "mine", 0.2, root=tmp_path)


def test_a_missing_text_file_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(MemlabInputError, match=r"text file nope\.txt was not found"):
        sequences.prepare({"kind": "text", "path": "nope.txt"}, "mine", 0.2, root=tmp_path)


def test_the_corpus_is_the_same_bytes_every_time(arrays):
    again = sequences.prepare({**SMALL, "canaries": CANARIES}, "t", 0.25, log=lambda m: None)
    assert arrays.keys() == again.keys()
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], again[key])
