import json
from itertools import islice
from pathlib import Path

import pytest

from asr.core.text import (
    BLANK,
    CharTokenizer,
    SentencePieceTokenizer,
    TokenizerConfig,
    build_tokenizer,
    normalize,
    number_to_words,
    tokenizer_from_dict,
    train_sentencepiece,
)
from asr.core.errors import AsrError

LJSPEECH = Path(__file__).resolve().parent / "data" / "ljspeech_300.txt"  # the first lines of LJ Speech's text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("  many\t spaces \n here  ", "MANY SPACES HERE"),
        ("I have 23 cats", "I HAVE TWENTY THREE CATS"),
        ("1,000 people", "ONE THOUSAND PEOPLE"),
        ("3.5 miles", "THREE POINT FIVE MILES"),
        ("in 1990", "IN ONE THOUSAND NINE HUNDRED NINETY"),
        ("the 21st and 12th", "THE TWENTY FIRST AND TWELFTH"),
        ("agent 007", "AGENT ZERO ZERO SEVEN"),
        ("abc123def", "ABC ONE HUNDRED TWENTY THREE DEF"),
        ("café naïve Zoë façade", "CAFE NAIVE ZOE FACADE"),
        ("don’t ‘stop’", "DON'T 'STOP'"),
        ("the boys' toys", "THE BOYS' TOYS"),
        ("he said ' no '' way", "HE SAID NO WAY"),
        ("o'clock -- well-known; (yes) \"quoted\"", "O'CLOCK WELL KNOWN YES QUOTED"),
        ("", ""),
        ("?!...", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "ZERO"),
        (7, "SEVEN"),
        (15, "FIFTEEN"),
        (40, "FORTY"),
        (99, "NINETY NINE"),
        (100, "ONE HUNDRED"),
        (101, "ONE HUNDRED ONE"),
        (1000, "ONE THOUSAND"),
        (1001000, "ONE MILLION ONE THOUSAND"),
        (10**12, "ONE TRILLION"),
        (123_456_789_012, "ONE HUNDRED TWENTY THREE BILLION FOUR HUNDRED FIFTY SIX MILLION "
                          "SEVEN HUNDRED EIGHTY NINE THOUSAND TWELVE"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_normalize_is_idempotent():
    text = normalize("It's 3.5°C — in Zürich, 1,250,000 people’s homes!")
    assert normalize(text) == text
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")


def test_char_tokenizer_round_trip():
    tok = CharTokenizer()
    assert len(tok) == 29 and tok.vocab[BLANK] == "<blank>" and tok.vocab[1] == "|"
    text = "THE BOYS' DOG BARKED"
    ids = tok.encode(text)
    assert BLANK not in ids
    assert ids[:4] == [tok.vocab.index(c) for c in "THE|"]
    assert tok.decode(ids) == text
    assert tok.decode([BLANK] + ids + [BLANK, 1]) == text


@pytest.mark.parametrize("text", ["hello", "A1", "A-B", "<blank>"])
def test_char_tokenizer_rejects_unknown_characters(text):
    with pytest.raises(ValueError, match="not in the character vocabulary"):
        CharTokenizer().encode(text)


@pytest.fixture(scope="module")
def sentences():
    with LJSPEECH.open() as f:
        return [normalize(line) for line in islice(f, 200)]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def sp_tokenizer(request, sentences, tmp_path_factory):
    path = train_sentencepiece(sentences, tmp_path_factory.mktemp("sp") / "sp.model", 128, request.param)
    assert path.is_file()
    return SentencePieceTokenizer.from_file(path)


def test_sentencepiece_round_trip(sp_tokenizer, sentences):
    assert len(sp_tokenizer) == 129 and sp_tokenizer.vocab[BLANK] == "<blank>"
    for text in sentences[:20] + ["QUIZZICAL JAZZ O'NEIL"]:
        ids = sp_tokenizer.encode(text)
        assert ids and BLANK not in ids and max(ids) < len(sp_tokenizer)
        assert sp_tokenizer.decode(ids) == text
        assert sp_tokenizer.decode([BLANK] + ids + [BLANK]) == text
    assert sp_tokenizer.vocab[1:] == [sp_tokenizer.sp.id_to_piece(i) for i in range(128)]


def test_sentencepiece_rejects_unknown_characters(sp_tokenizer):
    with pytest.raises(ValueError, match="not in the SentencePiece vocabulary"):
        sp_tokenizer.encode("HELLO 7")


@pytest.mark.parametrize("vocab_size", [10, 100_000])
def test_train_sentencepiece_explains_bad_vocab_size(tmp_path, sentences, vocab_size):
    with pytest.raises(ValueError, match=f"vocab_size={vocab_size}"):
        train_sentencepiece(sentences[:20], tmp_path / "sp.model", vocab_size)


def test_train_sentencepiece_rejects_empty_text(tmp_path):
    with pytest.raises(AsrError, match="no text"):
        train_sentencepiece(["", "?!"], tmp_path / "sp.model")


def test_to_dict_round_trip(sp_tokenizer):
    for tok in (CharTokenizer(), sp_tokenizer):
        d = json.loads(json.dumps(tok.to_dict()))
        again = tokenizer_from_dict(d)
        assert type(again) is type(tok) and again.vocab == tok.vocab
        assert again.encode("HELLO THERE") == tok.encode("HELLO THERE")


def test_build_tokenizer(tmp_path, sentences):
    assert isinstance(build_tokenizer(TokenizerConfig()), CharTokenizer)
    path = train_sentencepiece(sentences, tmp_path / "sp.model", 64)
    tok = build_tokenizer(TokenizerConfig(kind="sentencepiece", model=str(path)))
    assert isinstance(tok, SentencePieceTokenizer) and len(tok) == 65


@pytest.mark.parametrize(
    "cfg, message",
    [
        (TokenizerConfig(kind="word"), "unknown tokenizer kind 'word'"),
        (TokenizerConfig(kind="sentencepiece"), "needs model"),
        (TokenizerConfig(kind="sentencepiece", model="/no/such/sp.model"), "/no/such/sp.model"),
    ],
)
def test_build_tokenizer_errors(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_tokenizer(cfg)


def test_bad_model_and_dict_errors(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model: not a SentencePiece model"):
        SentencePieceTokenizer.from_file(bad)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({"kind": "bytes"})
