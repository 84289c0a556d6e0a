"""Turning CTC log-probabilities into token sequences: greedy best path, beam search with flashlight-text's
decoders (lexicon-free or lexicon-constrained, with or without a KenLM word n-gram), a choice among known
transcripts (isolated words, commands), and word timestamps with confidences from the CTC alignment.

Shapes: B batch, T output steps, V vocabulary (token ids, BLANK = 0). Log-probs are numpy float32 arrays (or anything
np.asarray takes, such as a CPU torch tensor): decoding needs no torch.
"""

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from asr.core.config import ConfigError
from asr.core.lm import LMError, lexicon_path, model_lm, model_tuned, read_lexicon, read_tuned
from asr.core.text import BLANK, WORD_SEPARATOR, normalize

WORD_START = "▁"  # SentencePiece's mark on a piece that begins a word
UNKNOWN_WORD = "<unk>"  # flashlight's word for a spelling outside the lexicon (with unk_score > -inf)
DEFAULT_LM_WEIGHT, DEFAULT_WORD_SCORE = 2.0, 0.0  # when neither the caller nor `asr tune-lm` set them


def greedy_decode(log_probs: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """Best path: argmax per step, merge repeats, drop blanks.

    log_probs (B, T, V), lengths (B,) -> B token-id lists
    """
    best = np.asarray(log_probs).argmax(axis=-1)  # (B, T)
    return [collapsed(path[:length]) for path, length in zip(best, np.asarray(lengths).tolist())]


def collapsed(path: np.ndarray) -> list[int]:
    """A CTC path (T,) -> its tokens: repeats merged, blanks dropped."""
    starts = np.concatenate([[True], path[1:] != path[:-1]])  # (T,) the first step of each run
    return path[starts & (path != BLANK)].tolist()


def word_alignment(path: list[int], tokenizer) -> list[tuple[str, int, int]]:
    """Words of a best path with the output steps they cover: (word, first step, end step exclusive).

    path: the argmax token id at each step (T,). A word spans its tokens' steps, repeats included; the
    separator "|" (characters) and a piece starting with "▁" (SentencePiece) begin a new word.
    """
    words: list[list] = []  # [token ids, first step, end step]
    new_word, previous = True, BLANK
    for step, token in enumerate(path):
        piece = tokenizer.vocab[token]
        if piece == WORD_SEPARATOR:
            new_word = True
        elif token == BLANK:
            pass
        elif token == previous:  # the same token held over several steps
            words[-1][2] = step + 1
        elif new_word or piece.startswith(WORD_START):
            words.append([[token], step, step + 1])
            new_word = False
        else:
            words[-1][0].append(token)
            words[-1][2] = step + 1
        previous = token
    return [(tokenizer.decode(ids), start, end) for ids, start, end in words]


KINDS = ("greedy", "beam", "choice")
BEAM_OPTIONS = ("lm", "lexicon", "beam_size", "beam_threshold", "lm_weight", "word_score", "unk_score")
# beam 100: on recipes/natural's five dev sets pooled, its leg 5 with its LM 27.39% WER, against 28.21% at 50 and
# 27.09% at 200, at RTF 0.0143 against 0.0101 at 50 (recipes/natural/RESULTS.md)
BEAM_DEFAULTS = {"beam_size": 100, "beam_threshold": 25.0, "unk_score": -math.inf}


@dataclass
class DecoderConfig:
    """How log-probabilities become text. A field left at None is decided by resolve_decoder, for the model at
    hand; the decoders take only the configs it returns, every field decided."""

    kind: str | None = None  # "greedy" (best path), "beam", or "choice" (one of the transcripts in `choices`)
    beam_size: int | None = None  # hypotheses kept after each step (100)
    beam_threshold: float | None = None  # hypotheses scoring this far below the best are pruned (25)
    lm: str | None = None  # KenLM word n-gram, ARPA or binary (`asr lm build`)
    lexicon: str | None = None  # words the beam may spell (with an LM: LM.lexicon.txt)
    lm_weight: float | None = None  # weight of the LM's log-probability (LM.tuned.json's, else 2)
    word_score: float | None = None  # added for every word: > 0 favours more words (LM.tuned.json's, else 0)
    unk_score: float | None = None  # added for an unknown word: a prefix of lexicon spellings that is no word (-inf)
    nbest: int = 1  # hypotheses returned per utterance by BeamSearchDecoder.nbest
    choices: str | None = None  # "choice": a file of the transcripts every utterance is one of, one per line


def resolve_decoder(request: DecoderConfig | None = None, model=None) -> DecoderConfig:
    """The decoder a model decodes with, every field decided: the one place that decides it.

    `model` is the model's file (None: a model without one). What `request` leaves at None: the kind is "choice"
    with a choices file, "beam" with a beam option or with an LM beside the model (lm.model_lm: the shipped
    model's default.lm.bin), else "greedy"; beam search given neither LM nor lexicon uses the model's LM; the
    lexicon is the LM's, the weights those `asr tune-lm` found for the model with its LM (lm.model_tuned) or,
    with an LM it was given, for that LM, else the defaults.
    """
    cfg = replace(request or DecoderConfig())
    given = [name for name in BEAM_OPTIONS if getattr(cfg, name) is not None]
    own_lm = model_lm(model) if model is not None else None
    cfg.kind = cfg.kind or ("choice" if cfg.choices else "beam" if given or own_lm else "greedy")
    check_request(cfg, given)
    if cfg.kind != "beam":
        return cfg
    if own_lm and not (cfg.lm or cfg.lexicon):
        cfg.lm, tuned = os.path.abspath(own_lm), model_tuned(model, own_lm)
    else:
        tuned = read_tuned(cfg.lm) if cfg.lm else {}
    return replace(cfg, lexicon=cfg.lexicon or (str(lexicon_path(cfg.lm)) if cfg.lm else None),
                   lm_weight=first_set(cfg.lm_weight, tuned.get("lm_weight"), DEFAULT_LM_WEIGHT),
                   word_score=first_set(cfg.word_score, tuned.get("word_score"), DEFAULT_WORD_SCORE),
                   **{name: first_set(getattr(cfg, name), value) for name, value in BEAM_DEFAULTS.items()})


def check_request(cfg: DecoderConfig, given: list[str]) -> None:
    """ConfigError for a decoder config that asks for what its kind cannot do."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"decoder kind must be 'greedy', 'beam' or 'choice', not {cfg.kind!r}")
    if cfg.kind != "beam" and given:
        raise ConfigError(f"--{given[0].replace('_', '-')} is a beam-search option: the {cfg.kind} decoder takes "
                         "none (beam search is --decoder beam)")
    if (cfg.kind == "choice") != bool(cfg.choices):
        raise ConfigError("the 'choice' decoder, and only it, takes a file of choices (--choices FILE)")
    if (cfg.beam_size is not None and cfg.beam_size < 1) or cfg.nbest < 1:
        raise ConfigError(f"beam_size ({cfg.beam_size}) and nbest ({cfg.nbest}) must be at least 1")


@dataclass
class Hypothesis:
    tokens: list[int]  # token ids, blanks and repeats removed (L,)
    text: str
    score: float  # acoustic log-probability + lm_weight * LM log-probability + word and unknown-word scores


class BeamSearchDecoder:
    """CTC beam search over a tokenizer's vocabulary with flashlight-text's lexicon and lexicon-free decoders (those
    of torchaudio's `ctc_decoder`, built here from the lexicon in memory rather than from files: start-up,
    docs/benchmarks.md section 5).

    Without a lexicon it is lexicon-free and spells anything; with one (always with an LM) it spells only
    lexicon words (and, with unk_score > -inf, prefixes of them as unknown words). Word boundaries: "|"
    for characters, a piece starting with "▁" for SentencePiece. The LM and the lexicon's trie are made
    once: `reweighted` shares them.
    """

    def __init__(self, tokenizer, cfg: DecoderConfig):
        """`cfg`: a config from resolve_decoder, every field decided."""
        from flashlight.lib.text.decoder import ZeroLM
        from flashlight.lib.text.dictionary import Dictionary

        self.tokenizer, self.cfg = tokenizer, cfg
        sil_token = next(t for t in (WORD_SEPARATOR, WORD_START, tokenizer.vocab[BLANK]) if t in tokenizer.vocab)
        self.sil = tokenizer.vocab.index(sil_token)
        if cfg.lm:
            check_lm_file(cfg.lm)
        spellings = spell_lexicon(read_lexicon(cfg.lexicon, cfg.lm), tokenizer, self.sil) if cfg.lexicon else {}
        self.words = Dictionary([UNKNOWN_WORD, *spellings])  # word ids, for the LM and the trie
        self.words.set_default_index(0)
        self.lm = self._load_lm() if cfg.lm else ZeroLM()
        self.trie = self._trie(spellings) if spellings else None
        self.search = self._build()

    @property
    def lm_weight(self) -> float:
        return self.cfg.lm_weight

    @property
    def word_score(self) -> float:
        return self.cfg.word_score

    def _load_lm(self):
        from flashlight.lib.text.decoder.kenlm import KenLM

        try:
            return KenLM(self.cfg.lm, self.words)
        except RuntimeError as err:
            raise LMError(f"{self.cfg.lm}: not a KenLM language model (ARPA or binary): "
                          f"{str(err).splitlines()[-1]}; build one with `asr lm build`") from None

    def _trie(self, spellings: dict[str, list[int]]):
        """The lexicon's spellings in a trie, each word's node scored with its unigram LM score, smeared up."""
        from flashlight.lib.text.decoder import SmearingMode, Trie

        trie, start = Trie(len(self.tokenizer), self.sil), self.lm.start(False)
        for spelling, index in zip(spellings.values(), self.words.map_entries_to_indices(list(spellings))):
            trie.insert(spelling, index, self.lm.score(start, index)[1])
        trie.smear(SmearingMode.MAX)
        return trie

    def _build(self):
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
        )

        cfg = self.cfg
        shared = {"beam_size": cfg.beam_size, "beam_size_token": len(self.tokenizer),
                  "beam_threshold": cfg.beam_threshold, "lm_weight": self.lm_weight, "sil_score": 0.0,
                  "log_add": False, "criterion_type": CriterionType.CTC}
        if not self.trie:
            return LexiconFreeDecoder(LexiconFreeDecoderOptions(**shared), self.lm, self.sil, BLANK, [])
        options = LexiconDecoderOptions(**shared, word_score=self.word_score, unk_score=cfg.unk_score)
        return LexiconDecoder(options, self.trie, self.lm, self.sil, BLANK, self.words.get_index(UNKNOWN_WORD), [],
                              False)

    def reweighted(self, lm_weight: float, word_score: float) -> "BeamSearchDecoder":
        """The same decoder with other LM weight and word score, sharing the loaded LM and the trie."""
        other = copy.copy(self)
        other.cfg = replace(self.cfg, lm_weight=lm_weight, word_score=word_score)
        other.search = other._build()
        return other

    def nbest(self, log_probs: np.ndarray, lengths: np.ndarray) -> list[list[Hypothesis]]:
        """log_probs (B, T, V), lengths (B,) -> for each utterance its best hypotheses, best first."""
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)  # flashlight reads it by address
        _, _, V = emissions.shape
        results = []
        for b, length in enumerate(np.asarray(lengths).tolist()):
            hyps = self.search.decode(emissions.ctypes.data + b * emissions.strides[0], length, V)
            results.append([self._hypothesis(h, length) for h in hyps[:self.cfg.nbest]])
        return results

    def _hypothesis(self, h, length: int) -> Hypothesis:
        # flashlight's path has a virtual step before the first and after the last one, where it puts a silence
        # token that the emissions never had: keep the tokens that start a run in steps 1..length, blanks dropped
        path = h.tokens
        tokens = [token for step, token in enumerate(path[1:length + 1], 1) if token not in (BLANK, path[step - 1])]
        return Hypothesis(tokens, self.tokenizer.decode(tokens), h.score)

    def __call__(self, log_probs: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        """log_probs (B, T, V), lengths (B,) -> B token-id lists, the best hypothesis of each."""
        return [hyps[0].tokens if hyps else [] for hyps in self.nbest(log_probs, lengths)]


def first_set(*values):
    return next(v for v in values if v is not None)


def check_lm_file(path) -> None:
    """LMError unless `path` starts like an ARPA file or a KenLM binary."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as err:
        raise LMError(f"{path}: cannot read the language model ({err.strerror}); "
                      f"build one with `asr lm build TEXT... --out {path}`") from None
    if not (head.startswith(b"mmap lm ") or head.lstrip().startswith(b"\\data\\")):
        raise LMError(f"{path}: not a KenLM language model (ARPA text starting with \\data\\, or a KenLM "
                      "binary); build one with `asr lm build`")


def spell_lexicon(words: list[str], tokenizer, sil: int) -> dict[str, list[int]]:
    """{WORD: its token ids} of the words the tokenizer can spell, ending with the silence token `sil` where that
    is the word separator "|" (characters)."""
    end = [sil] if tokenizer.vocab[sil] == WORD_SEPARATOR else []
    spellings = {}
    for word in words:
        try:
            spellings[word] = tokenizer.encode(word) + end
        except ValueError:  # characters outside the vocabulary, e.g. "<unk>" or "<s>" from a KenLM vocab
            continue
    if not spellings:
        raise LMError(f"none of the {len(words)} lexicon words can be spelled with the model's tokens")
    return spellings


Decoder = Callable[[np.ndarray, np.ndarray], list[list[int]]]  # (B, T, V), (B,) -> B token-id lists


class ChoiceDecoder:
    """Closed-set recognition, for speech known to be one of a few transcripts (a digit, a command): each
    utterance gets the transcript of highest CTC probability, summed over all its alignments (the forward
    algorithm of the CTC loss). Unlike a lexicon beam it answers exactly one choice, never none or two, and a
    faint or cut-off word still goes to the closest choice rather than to whatever its best path spells."""

    def __init__(self, tokenizer, path):
        self.choices = read_choices(path, tokenizer)  # C token-id lists
        self.targets = np.zeros((len(self.choices), max(map(len, self.choices))), dtype=np.int64)  # (C, L)
        for row, ids in zip(self.targets, self.choices):
            row[:len(ids)] = ids
        self.target_lengths = np.array([len(ids) for ids in self.choices])  # (C,)

    def __call__(self, log_probs: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        """log_probs (B, T, V), lengths (B,) -> B token-id lists, each one of the choices (or none, for an
        utterance too short to hold any of them)."""
        hypotheses = []
        for probs, length in zip(np.asarray(log_probs, dtype=np.float32), np.asarray(lengths).tolist()):
            nll = self.scores(probs[:length])
            best = int(nll.argmin())
            hypotheses.append(self.choices[best] if np.isfinite(nll[best]) else [])  # [] if too short for any
        return hypotheses

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """probs (T, V) -> (C,) negative log-probabilities of the choices, inf where a choice needs more steps: the
        CTC forward algorithm over all choices at once, holding one step's variables (C, 2L+1) at a time."""
        probs = np.asarray(probs, dtype=np.float64)
        labels = extended_labels(self.targets)  # (C, S)
        skip = can_skip(labels)  # (C, S)
        alpha = np.full(labels.shape, -np.inf)  # (C, S)
        alpha[:, :2] = probs[0][labels[:, :2]]
        for step in probs[1:]:
            alpha = np.logaddexp(np.logaddexp(alpha, shifted(alpha, 1)), np.where(skip, shifted(alpha, 2), -np.inf))
            alpha += step[labels]
        rows, end = np.arange(len(labels)), 2 * self.target_lengths  # the last label's blank, then the label
        return -np.logaddexp(alpha[rows, end], alpha[rows, end - 1])


def extended_labels(targets: np.ndarray) -> np.ndarray:
    """Targets (..., L) -> CTC's labels (..., S = 2L + 1): a blank before, between and after the tokens."""
    labels = np.full((*targets.shape[:-1], 2 * targets.shape[-1] + 1), BLANK, dtype=np.int64)
    labels[..., 1::2] = targets
    return labels


def can_skip(labels: np.ndarray) -> np.ndarray:
    """(..., S) bool: a path may reach label s from s - 2, skipping a blank (s is a token unlike the one at s - 2)."""
    skip = np.zeros(labels.shape, dtype=bool)
    skip[..., 2:] = (labels[..., 2:] != BLANK) & (labels[..., 2:] != labels[..., :-2])
    return skip


def shifted(alpha: np.ndarray, by: int) -> np.ndarray:
    """alpha (..., S) moved `by` states to the right along its last axis, -inf coming in."""
    out = np.full_like(alpha, -np.inf)
    out[..., by:] = alpha[..., :-by]
    return out


def read_choices(path, tokenizer) -> list[list[int]]:
    """The normalised lines of a choices file, encoded; ValueError naming the file and line if one cannot be."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the choices ({getattr(err, 'strerror', None) or err})") from None
    choices = {}
    for number, line in enumerate(lines, 1):
        if not (text := normalize(line)):
            continue
        try:
            choices.setdefault(text, tokenizer.encode(text))
        except ValueError as err:
            raise ConfigError(f"{path}, line {number}: the model cannot spell {line.strip()!r}: {err}") from None
    if not choices:
        raise ConfigError(f"{path}: no choices in the file (one transcript per line)")
    return list(choices.values())


def build_decoder(tokenizer, cfg: DecoderConfig) -> Decoder:
    """The decoder a config from resolve_decoder asks for: greedy_decode, a BeamSearchDecoder (which loads the
    LM), or a ChoiceDecoder."""
    if cfg.kind == "choice":
        return ChoiceDecoder(tokenizer, cfg.choices)
    return greedy_decode if cfg.kind == "greedy" else BeamSearchDecoder(tokenizer, cfg)


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the audio
    end: float
    confidence: float  # mean posterior of the word's tokens over the steps that emit them, 0..1


def word_timestamps(log_probs: np.ndarray, tokens: list[int], tokenizer, step_seconds: float) -> list[Word]:
    """Words of a decoded token sequence with their times, from the CTC alignment of the tokens.

    log_probs (T, V) of one utterance (valid steps only), tokens (L,) from any decoder. The alignment
    is the most probable CTC path that spells exactly these tokens (for greedy output, the best path).
    """
    if not tokens:
        return []
    log_probs = np.asarray(log_probs, dtype=np.float32)
    path = forced_align(log_probs, tokens)  # (T,)
    probs = np.exp(log_probs[np.arange(len(path)), path])  # (T,) the posterior of each step's token
    words = []
    for word, start, end in word_alignment(path.tolist(), tokenizer):
        emitting = path[start:end] != BLANK
        confidence = float(probs[start:end][emitting].mean())
        if word:
            words.append(Word(word, round(start * step_seconds, 3), round(end * step_seconds, 3), round(confidence, 3)))
    return words


def forced_align(log_probs: np.ndarray, tokens: list[int]) -> np.ndarray:
    """The most probable CTC path (T,) of token ids that spells `tokens` (L,), for log_probs (T, V) float32: Viterbi
    over CTC's labels (S = 2L + 1) in float32, choosing as torchaudio's forced_align does (staying on a tie, then
    advancing one label). ValueError if T is too short to spell them."""
    labels = extended_labels(np.array(tokens, dtype=np.int64))  # (S,)
    skip_mask = np.where(can_skip(labels), 0, -np.inf).astype(np.float32)  # (S,) 0 where a blank may be skipped
    emitted = log_probs[:, labels]  # (T, S)
    alphas = np.full(emitted.shape, -np.inf, dtype=np.float32)  # (T, S) best score of a path to each label
    alphas[0, :2] = emitted[0, :2]
    for t in range(1, len(emitted)):
        before, best = alphas[t - 1], alphas[t - 1].copy()  # (S,) staying on the label
        np.maximum(best[1:], before[:-1], out=best[1:])  # advancing one label
        np.maximum(best[2:], before[:-2] + skip_mask[2:], out=best[2:])  # skipping a blank
        np.add(best, emitted[t], out=alphas[t])
    state = len(labels) - 1 if alphas[-1, -1] > alphas[-1, -2] else len(labels) - 2
    if not np.isfinite(alphas[-1, state]):
        raise ValueError(f"{len(emitted)} steps cannot spell {len(tokens)} tokens")
    return labels[backtrack(alphas, skip_mask, state)]


def backtrack(alphas: np.ndarray, skip_mask: np.ndarray, state: int) -> list[int]:
    """The labels' indices (T,) of the best path ending in `state`, from the Viterbi scores alphas (T, S)."""
    states = [state]
    for before in alphas[-2::-1]:  # (S,) each step's scores, last but one first
        stay, one = before[state], before[state - 1] if state >= 1 else -np.inf
        two = before[state - 2] + skip_mask[state] if state >= 2 else -np.inf
        state -= 2 if two > max(stay, one) else 1 if one > stay else 0
        states.append(state)
    return states[::-1]
