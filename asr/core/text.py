"""Transcript normalisation and tokenizers (characters, SentencePiece).

Normalised text is LibriSpeech-style: upper-case A-Z, apostrophes and single spaces. Every tokenizer
reserves id BLANK = 0 for the CTC blank, so `encode` never returns it.
"""

import base64
import io
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

from asr.core.config import ConfigError
from asr.core.errors import AsrError

BLANK = 0  # CTC blank id in every tokenizer
WORD_SEPARATOR = "|"  # stands for a space in the character vocabulary, as in wav2vec2/flashlight
CHAR_VOCAB = ["<blank>", WORD_SEPARATOR, "'"] + list(string.ascii_uppercase)

_ONES = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN "
    "FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN"
).split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_SCALES = "_ THOUSAND MILLION BILLION TRILLION QUADRILLION QUINTILLION".split()
_ORDINALS = {"ONE": "FIRST", "TWO": "SECOND", "THREE": "THIRD", "FIVE": "FIFTH", "EIGHT": "EIGHTH",
             "NINE": "NINTH", "TWELVE": "TWELFTH"}
_NUMBER = re.compile(r"(\d+(?:,\d{3})*)(?:\.(\d+)|(st|nd|rd|th)\b)?", re.IGNORECASE)


def _below_thousand(n: int) -> list[str]:
    """Words for 1 <= n < 1000."""
    words = [_ONES[n // 100], "HUNDRED"] if n >= 100 else []
    n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
    return words + [_ONES[n]] if n else words


def number_to_words(n: int) -> str:
    """Spell a non-negative integer: 1990 -> "ONE THOUSAND NINE HUNDRED NINETY".

    Numbers past the largest named scale (10^21 and up) are read digit by digit.
    """
    if n >= 1000 ** len(_SCALES):
        return " ".join(_ONES[int(d)] for d in str(n))
    if n == 0:
        return "ZERO"
    words = []
    for scale in _SCALES:
        n, group = divmod(n, 1000)
        if group:
            words = _below_thousand(group) + ([] if scale == "_" else [scale]) + words
    return " ".join(words)


def _ordinal(words: str) -> str:
    """Ordinal of spelled-out words: TWENTY ONE -> TWENTY FIRST, TWENTY -> TWENTIETH."""
    *head, last = words.split()
    if last in _ORDINALS:
        last = _ORDINALS[last]
    elif last.endswith("Y"):
        last = last[:-1] + "IETH"
    else:
        last += "TH"
    return " ".join(head + [last])


def _spell(match: re.Match) -> str:
    """Words for one number found by _NUMBER: "1,000", "3.5", "21st", "007"."""
    digits, fraction, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    if digits.startswith("0") and len(digits) > 1:  # "007", a code: read each digit
        words = " ".join(_ONES[int(d)] for d in digits)
    else:
        words = number_to_words(int(digits))
    if fraction:
        words += " POINT " + " ".join(_ONES[int(d)] for d in fraction)
    elif suffix:
        words = _ordinal(words)
    return f" {words} "


def normalize(text: str) -> str:
    """LibriSpeech-style text: "It's 23.5°, café-au-lait!" -> "IT'S TWENTY THREE POINT FIVE CAFE AU LAIT"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))  # strip accents
    text = re.sub("[\u2018\u2019\u02bc]", "'", text)  # curly apostrophes
    text = _NUMBER.sub(_spell, text).upper()
    text = re.sub(r"[^A-Z']+", " ", text)  # hyphens and other punctuation
    text = re.sub(r"'+", "'", text)
    text = re.sub(r"(?<![A-Z])'(?![A-Z])", " ", text)  # keep only apostrophes touching a letter
    return " ".join(text.split())


SPOKEN_PUNCTUATION = "#%&@"  # punctuation a reader says aloud ("at", "percent"), which normalize() drops


def dropped_characters(text: str) -> list[str]:
    """The characters normalize() drops from `text` beyond punctuation and spaces, sorted: letters outside A-Z
    once accents are stripped ("你", "ß"), symbols ("|", "~", "°", "$") and SPOKEN_PUNCTUATION. Words were said
    for them that the transcript then lacks."""
    return sorted({c for c in unicodedata.normalize("NFKD", text) if not _kept(c)})


def _kept(c: str) -> bool:
    """Whether normalize() keeps the character `c` (of NFKD text), or drops only an accent, a space or punctuation."""
    return bool(unicodedata.combining(c) or c.isspace() or c.isdecimal() or (c.isascii() and c.isalpha())
                or (unicodedata.category(c).startswith("P") and c not in SPOKEN_PUNCTUATION))


class CharTokenizer:
    """Characters of normalised text: <blank>, | (space), ' and A-Z."""

    def __init__(self):
        self.vocab = list(CHAR_VOCAB)
        self._ids = {c: i for i, c in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids (L,); raises ValueError for a character outside the vocabulary."""
        ids = []
        for c in " ".join(text.split()).replace(" ", WORD_SEPARATOR):
            if c not in self._ids or c == self.vocab[BLANK]:
                raise ValueError(
                    f"character {c!r} in {text!r} is not in the character vocabulary (A-Z, ' and space); "
                    "normalise the text with asr.core.text.normalize first"
                )
            ids.append(self._ids[c])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (L,) -> text, skipping blanks. Repeats are kept: CTC collapsing is the decoder's job."""
        text = "".join(self.vocab[i] for i in map(int, ids) if i != BLANK)
        return " ".join(text.replace(WORD_SEPARATOR, " ").split())

    def to_dict(self) -> dict:
        return {"kind": "char"}


class SentencePieceTokenizer:
    """A SentencePiece model with ids shifted by one so that 0 is the CTC blank."""

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.model_proto)
        except (RuntimeError, OSError) as err:
            raise ValueError("not a SentencePiece model; train one with asr.core.text.train_sentencepiece") from err
        self.vocab = ["<blank>"] + [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    @classmethod
    def from_file(cls, path: str | Path) -> "SentencePieceTokenizer":
        """Load a .model file written by train_sentencepiece."""
        try:
            proto = Path(path).read_bytes()
        except OSError as err:
            raise ConfigError(
                f"{path}: cannot read the SentencePiece model ({err.strerror}); "
                "check the path or train one with asr.core.text.train_sentencepiece"
            ) from err
        try:
            return cls(proto)
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from err

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Normalised text -> ids (L,); raises ValueError for a character the model never saw."""
        ids = self.sp.encode(text, out_type=int)
        if self.sp.unk_id() in ids:
            unknown = sorted({c for c in text if c != " " and self.sp.piece_to_id(c) == self.sp.unk_id()})
            raise ValueError(
                f"characters {unknown} in {text!r} are not in the SentencePiece vocabulary; "
                "normalise the text with asr.core.text.normalize, or retrain on text that contains them"
            )
        return [i + 1 for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (L,) -> text, skipping blanks."""
        return " ".join(self.sp.decode([i - 1 for i in map(int, ids) if i != BLANK]).split())

    def to_dict(self) -> dict:
        return {"kind": "sentencepiece", "model": base64.b64encode(self.model_proto).decode("ascii")}


Tokenizer = CharTokenizer | SentencePieceTokenizer


def train_sentencepiece(
    texts: Iterable[str], out_path: str | Path, vocab_size: int = 256, model_type: str = "unigram"
) -> Path:
    """Train a SentencePiece model on normalised `texts`, write it to `out_path` (.model), return the path."""
    if model_type not in ("unigram", "bpe"):
        raise ConfigError(f"model_type must be 'unigram' or 'bpe', not {model_type!r}")
    sentences = [s for s in map(normalize, texts) if s]
    if not sentences:
        raise AsrError("no text to train a SentencePiece model on: every sentence is empty after normalisation")
    needed = len(set("".join(sentences))) + 1  # every character (space as "▁") plus <unk>
    if vocab_size < needed:
        raise ConfigError(f"vocab_size={vocab_size} is too small: the characters alone need {needed} pieces")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, bos_id=-1, eos_id=-1, unk_id=0, character_coverage=1.0,
            normalization_rule_name="identity", minloglevel=2,
        )
    except RuntimeError as err:
        raise ConfigError(
            f"cannot train a {model_type} SentencePiece model with vocab_size={vocab_size} on "
            f"{len(sentences)} sentences: {str(err).split('] ')[-1]} "
            "Use more text or a smaller vocab_size."
        ) from err
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.getvalue())
    return out_path


@dataclass
class TokenizerConfig:
    kind: str = "char"  # "char" or "sentencepiece"
    model: str | None = None  # path to a .model file, for kind "sentencepiece"


def build_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    """The tokenizer a config names."""
    if cfg.kind == "char":
        return CharTokenizer()
    if cfg.kind == "sentencepiece":
        if not cfg.model:
            raise ConfigError(
                "tokenizer kind 'sentencepiece' needs model: the path to a .model file "
                "(train one with asr.core.text.train_sentencepiece)"
            )
        return SentencePieceTokenizer.from_file(cfg.model)
    raise ConfigError(f"unknown tokenizer kind {cfg.kind!r}; use 'char' or 'sentencepiece'")


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from its to_dict() form; ValueError for data of another form."""
    if not isinstance(d, dict):
        raise ValueError(f"a tokenizer is described by a JSON object, got a {type(d).__name__}")
    kind = d.get("kind")
    if kind == "char":
        return CharTokenizer()
    if kind == "sentencepiece":
        if not isinstance(d.get("model"), str):
            raise ValueError("a sentencepiece tokenizer needs its model as a base64 string")
        return SentencePieceTokenizer(base64.b64decode(d["model"], validate=True))
    raise ValueError(f"unknown tokenizer kind {kind!r} in tokenizer dict; expected 'char' or 'sentencepiece'")
