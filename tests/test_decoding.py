"""Greedy and beam search on hand-made CTC log-probabilities: an n-gram LM built from a few sentences
corrects what greedy misspells, closed-set choice by CTC probability, word timestamps, and clear errors for
bad LM and choices files."""

import itertools
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asr.core.config import ConfigError
from asr.core.decoding import (
    BeamSearchDecoder,
    ChoiceDecoder,
    DecoderConfig,
    build_decoder,
    collapsed,
    forced_align,
    greedy_decode,
    resolve_decoder,
    word_timestamps,
)
from asr.core import lm as lm_module
from asr.core.lm import LMError, build_lm, lexicon_path, own_tuned_path, tuned_path, write_tuned
from asr.core.text import CharTokenizer, SentencePieceTokenizer, train_sentencepiece

TEXT = ["THE CAT SAT ON THE MAT", "THE DOG BARKS AT THE CAT", "THE LOG BURNS IN THE FIRE", "A CAT IS HAPPY",
        "OPEN THE DOOR", "HELLO WORLD"]
STEP = 0.02  # seconds per output step


def emissions(tokenizer, frames: list) -> np.ndarray:
    """Log-probs (T, V) from frames: a token string ("-" for blank) gets 0.9, or a {token: prob} dict
    shares out its probabilities; the rest of each frame's mass is spread over the other tokens."""
    ids = {piece: i for i, piece in enumerate(tokenizer.vocab)} | {"-": 0}
    probs = np.full((len(frames), len(tokenizer)), 1e-3, dtype=np.float32)
    for t, frame in enumerate(frames):
        for piece, p in (frame if isinstance(frame, dict) else {frame: 0.9}).items():
            probs[t, ids[piece]] = p
    return np.log(probs / probs.sum(axis=-1, keepdims=True))


def spelled(text: str, confusions: dict | None = None) -> list:
    """Frames for a character sequence, each character between blanks; confusions[i] replaces frame i."""
    frames = [f for c in text.replace(" ", "|") for f in ("-", c)] + ["-"]
    for i, frame in (confusions or {}).items():
        frames[i] = frame
    return frames


def decode(decoder, log_probs: np.ndarray) -> list[int]:
    return decoder(log_probs[None], np.array([len(log_probs)]))[0]


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    (folder / "text.txt").write_text("\n".join(TEXT) + "\n")
    return build_lm([folder / "text.txt"], folder / "lm.arpa", order=3, estimator="kaldingram")


def test_lm_makes_beam_search_choose_the_in_vocabulary_word(lm):
    chars = CharTokenizer()
    # greedy hears "THE KAT SAT": K wins its frame, C comes second
    log_probs = emissions(chars, spelled("THE KAT SAT", {9: {"K": 0.5, "C": 0.4}}))
    assert chars.decode(decode(greedy_decode, log_probs)) == "THE KAT SAT"
    assert decode_text(chars, DecoderConfig("beam"), log_probs) == "THE KAT SAT"
    beam_lm = build_decoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(lm))))
    assert chars.decode(decode(beam_lm, log_probs)) == "THE CAT SAT"


def test_the_lm_context_picks_between_lexicon_words(lm):
    chars = CharTokenizer()
    decoder = BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(lm), nbest=3)))
    for heard, best in [("THE DOG BARKS", "THE DOG BARKS"), ("THE DOG BURNS", "THE LOG BURNS")]:
        # "THE ?OG ...": D and L equally likely, and the word after decides
        log_probs = emissions(chars, spelled(heard, {9: {"D": 0.45, "L": 0.45}}))
        hypotheses = decoder.nbest(log_probs[None], np.array([len(log_probs)]))[0]
        assert hypotheses[0].text == best and len(hypotheses) == 3
        assert hypotheses[0].score > hypotheses[1].score >= hypotheses[2].score


def decode_text(tokenizer, cfg: DecoderConfig, log_probs: np.ndarray) -> str:
    return tokenizer.decode(decode(build_decoder(tokenizer, resolve_decoder(cfg)), log_probs))


def test_a_lexicon_without_lm_spells_only_lexicon_words(lm):
    chars = CharTokenizer()
    log_probs = emissions(chars, spelled("THE KAT SAT", {9: {"K": 0.5, "C": 0.4}}))
    lexicon = str(lm.with_suffix(".lexicon.txt"))
    assert decode_text(chars, DecoderConfig("beam", lexicon=lexicon), log_probs) == "THE CAT SAT"


def test_tuned_weights_next_to_the_lm_are_used_unless_given(lm):
    chars = CharTokenizer()
    assert BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(lm)))).lm_weight == 2.0
    write_tuned(lm, {"lm_weight": 0.75, "word_score": -0.5, "wer": 0.1})
    try:
        tuned = BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(lm))))
        assert (tuned.lm_weight, tuned.word_score) == (0.75, -0.5)
        given = BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(lm), lm_weight=1.5)))
        assert (given.lm_weight, given.word_score) == (1.5, -0.5)
        assert (given.reweighted(0.0, 1.0).lm_weight, given.lm_weight) == (0.0, 1.5)
        reweighted = given.reweighted(0.0, 1.0)
        assert (reweighted.cfg.lm_weight, reweighted.cfg.word_score, given.cfg.lm_weight) == (0.0, 1.0, 1.5)
    finally:
        tuned_path(lm).unlink()


def test_a_shipped_model_sharing_the_default_lm_decodes_with_weights_of_its_own(lm, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_module, "ASSETS", tmp_path)  # a package whose shipped models share default.lm.arpa
    monkeypatch.setattr(lm_module, "DEFAULT_MODEL", tmp_path / "default.safetensors")
    shared = tmp_path / "default.lm.arpa"
    shutil.copy(lm, shared)
    shutil.copy(lexicon_path(lm), lexicon_path(shared))
    write_tuned(shared, {"lm_weight": 0.75, "word_score": -0.5})
    streaming = tmp_path / "streaming.onnx"

    def weights(model):
        cfg = resolve_decoder(None, model)
        return cfg.lm, cfg.lm_weight, cfg.word_score

    assert weights(streaming) == weights(tmp_path / "default.onnx") == (str(shared), 0.75, -0.5)
    assert own_tuned_path(streaming) == tmp_path / "streaming.lm.tuned.json"
    own_tuned_path(streaming).write_text('{"lm_weight": 1.25, "word_score": 0.5}')
    assert weights(streaming) == (str(shared), 1.25, 0.5)
    assert weights(tmp_path / "streaming.safetensors") == (str(shared), 1.25, 0.5)
    assert weights(tmp_path / "default.onnx") == (str(shared), 0.75, -0.5)
    given = resolve_decoder(DecoderConfig(lm=str(shared)), streaming)  # an LM named: that LM's weights
    assert (given.lm_weight, given.word_score) == (0.75, -0.5)


@pytest.mark.parametrize("bad", [dict(beam_size=0), dict(beam_size=-1), dict(nbest=0)])
def test_a_beam_or_nbest_below_one_is_refused(bad):
    with pytest.raises(ConfigError, match="must be at least 1"):
        resolve_decoder(DecoderConfig("beam", **bad))


def test_a_model_decodes_with_the_lm_beside_its_file_unless_told_otherwise(lm, tmp_path):
    model = tmp_path / "m.safetensors"  # resolve_decoder looks only beside the model's file
    assert resolve_decoder(None, model) == resolve_decoder(DecoderConfig("greedy")) == DecoderConfig("greedy")
    assert resolve_decoder(DecoderConfig(beam_size=8), model).lm is None  # beam search, lexicon-free
    own = tmp_path / "m.lm.arpa"
    shutil.copy(lm, own)
    shutil.copy(lexicon_path(lm), lexicon_path(own))
    write_tuned(own, {"lm_weight": 0.75, "word_score": -0.5})
    cfg = resolve_decoder(None, model)
    assert (cfg.kind, cfg.lm, cfg.lexicon) == ("beam", str(own), str(lexicon_path(own)))
    assert (cfg.lm_weight, cfg.word_score, cfg.beam_size, cfg.beam_threshold) == (0.75, -0.5, 100, 25.0)
    given = {"beam_size": 8, "word_score": 1.0}
    assert resolve_decoder(DecoderConfig(**given), model) == replace(cfg, **given)
    assert resolve_decoder(DecoderConfig("greedy"), model) == DecoderConfig("greedy")
    assert resolve_decoder(DecoderConfig(lexicon=str(lexicon_path(lm))), model).lm is None  # a lexicon of its own
    assert resolve_decoder(DecoderConfig(lm=str(lm)), model).lm == str(lm)
    assert resolve_decoder(DecoderConfig(choices="digits.txt"), model).kind == "choice"


def test_sentencepiece_beam_search_with_lm(lm, tmp_path):
    sp = SentencePieceTokenizer.from_file(
        train_sentencepiece(TEXT * 3 + ["A RED HAT"], tmp_path / "sp.model", vocab_size=50, model_type="bpe"))
    pieces = [sp.vocab[i] for i in sp.encode("THE HAT SAT")]
    assert pieces[1:3] == ["▁H", "AT"] and [sp.vocab[i] for i in sp.encode("CAT")] == ["▁CAT"]
    # greedy hears "THE HAT SAT" (▁H AT); "CAT" (one piece, ▁CAT) comes a close second
    frames = [f for piece in pieces for f in ("-", piece)] + ["-"]
    frames[3], frames[5] = {"▁H": 0.5, "▁CAT": 0.4}, {"AT": 0.5, "-": 0.4}
    log_probs = emissions(sp, frames)
    assert sp.decode(decode(greedy_decode, log_probs)) == "THE HAT SAT"
    assert decode_text(sp, DecoderConfig("beam", lm=str(lm)), log_probs) == "THE CAT SAT"
    words = word_timestamps(log_probs, decode(build_decoder(sp, resolve_decoder(DecoderConfig("beam", lm=str(lm)))),
                                              log_probs),
                            sp, STEP)
    assert [w.word for w in words] == ["THE", "CAT", "SAT"]


@pytest.fixture
def digits(tmp_path) -> Path:
    path = tmp_path / "digits.txt"
    path.write_text("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n")  # normalised on reading
    return path


def test_the_choice_decoder_answers_a_cut_off_word_with_the_closest_choice(digits):
    chars = CharTokenizer()
    decoder = build_decoder(chars, resolve_decoder(DecoderConfig(choices=str(digits))))
    cut_off = emissions(chars, spelled("SEVE")[:-1] + [{"N": 0.3, "-": 0.6}])  # the N a second guess at the end
    assert chars.decode(decode(greedy_decode, cut_off)) == "SEVE"
    assert chars.decode(decode(decoder, cut_off)) == "SEVEN"
    assert chars.decode(decode(decoder, emissions(chars, spelled("NINE")))) == "NINE"
    assert decode(decoder, emissions(chars, spelled("T")[:2])) == []  # 2 steps: too short for any digit


def random_log_probs(chars, live: list[int], steps: int, rng) -> np.ndarray:
    """Log-probs (T, V) with their mass on the `live` tokens; the others get almost none."""
    logits = np.full((steps, len(chars)), -30.0)  # (T, V)
    logits[:, live] = 3 * rng.standard_normal((steps, len(live)))
    return (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(np.float32)


def every_path(chars, live: list[int], log_probs: np.ndarray):
    """(text it spells, log-probability) of every path over the live tokens through the T steps."""
    for path in itertools.product(live, repeat=len(log_probs)):
        yield chars.decode(collapsed(np.array(path))), float(log_probs[np.arange(len(path)), path].sum()), path


def test_the_choice_is_the_transcript_of_highest_probability_over_all_alignments(tmp_path):
    """Against brute force: every path over {blank, A, B} through T steps, collapsed, its probability summed
    into the choice it spells: the choice decoder's scores are those sums, and it answers the largest."""
    chars = CharTokenizer()
    (tmp_path / "choices.txt").write_text("A\nAB\nBA\nABA\nB\n")
    decoder = ChoiceDecoder(chars, tmp_path / "choices.txt")
    live, rng = [0, chars.encode("A")[0], chars.encode("B")[0]], np.random.default_rng(0)
    for _ in range(20):
        log_probs = random_log_probs(chars, live, 6, rng)
        totals = dict.fromkeys(["A", "AB", "BA", "ABA", "B"], 0.0)
        for text, log_prob, _ in every_path(chars, live, log_probs):
            if text in totals:
                totals[text] += math.exp(log_prob)
        assert np.allclose(np.exp(-decoder.scores(log_probs)), list(totals.values()), rtol=1e-4)
        assert chars.decode(decode(decoder, log_probs)) == max(totals, key=totals.get)


def test_the_forced_alignment_is_the_best_path_that_spells_the_tokens():
    """Against brute force: of every path over {blank, A, B} through T steps that spells ABBA, the most probable."""
    chars = CharTokenizer()
    live, rng, tokens = [0, chars.encode("A")[0], chars.encode("B")[0]], np.random.default_rng(1), chars.encode("ABBA")
    for _ in range(10):
        log_probs = random_log_probs(chars, live, 7, rng)
        paths = [(log_prob, path) for text, log_prob, path in every_path(chars, live, log_probs) if text == "ABBA"]
        assert forced_align(log_probs, tokens).tolist() == list(max(paths)[1])
    with pytest.raises(ValueError, match="4 steps cannot spell 4 tokens"):
        forced_align(log_probs[:4], tokens)  # the two Bs need a blank between them


def test_bad_choices_files_give_clear_errors(tmp_path):
    chars = CharTokenizer()
    with pytest.raises(ValueError, match=r"nope\.txt: cannot read the choices \(No such file or directory\)"):
        ChoiceDecoder(chars, tmp_path / "nope.txt")
    (tmp_path / "dashes.txt").write_text("---\n\n")
    with pytest.raises(ValueError, match=r"dashes\.txt: no choices in the file"):
        ChoiceDecoder(chars, tmp_path / "dashes.txt")
    with pytest.raises(ValueError, match="only it, takes a file of choices"):
        resolve_decoder(DecoderConfig("choice"))
    with pytest.raises(ValueError, match="--lm is a beam-search option: the choice decoder takes none"):
        resolve_decoder(DecoderConfig(choices="digits.txt", lm="lm.arpa"))


@pytest.mark.parametrize("config", [DecoderConfig("greedy"), DecoderConfig("beam"), DecoderConfig(lm="LM")])
def test_word_timestamps_are_monotonic_within_the_audio_and_confident(lm, config):
    chars = CharTokenizer()
    frames = spelled("THE CAT SAT ON THE MAT", {9: {"C": 0.6, "K": 0.3}})
    frames[21:21] = ["T", "T", "T"]  # the T of SAT held over four steps
    log_probs = emissions(chars, frames)
    if config.lm:
        config = DecoderConfig(lm=str(lm))
    tokens = decode(build_decoder(chars, resolve_decoder(config)), log_probs)
    words = word_timestamps(log_probs, tokens, chars, STEP)
    assert " ".join(w.word for w in words) == chars.decode(tokens) == "THE CAT SAT ON THE MAT"
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times) and all(w.start < w.end for w in words)
    assert 0 <= times[0] and times[-1] <= len(log_probs) * STEP
    assert (words[0].start, words[0].end) == pytest.approx((1 * STEP, 6 * STEP))  # T H E at steps 1, 3, 5
    assert (words[2].start, words[2].end) == pytest.approx((17 * STEP, 25 * STEP))  # S A T, T held to step 24
    assert all(0.5 < w.confidence <= 1 for w in words)
    assert words[1].confidence < words[0].confidence  # C shared its frame with K


def test_no_tokens_no_words():
    chars = CharTokenizer()
    assert word_timestamps(emissions(chars, ["-"] * 5), [], chars, STEP) == []


def test_bad_lm_and_lexicon_paths_give_clear_errors(lm, tmp_path):
    chars = CharTokenizer()
    with pytest.raises(LMError, match=r"nope\.arpa: cannot read the language model \(No such file or directory\); "
                                     r"build one with `asr lm build"):
        BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(tmp_path / "nope.arpa"),
                                                               lexicon=str(lm.with_suffix(".lexicon.txt")))))
    lexicon = str(lm.with_suffix(".lexicon.txt"))
    garbage = tmp_path / "garbage.arpa"
    garbage.write_text("this is not an ARPA file\n")
    with pytest.raises(LMError, match=r"garbage\.arpa: not a KenLM language model \(ARPA text"):
        BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(garbage), lexicon=lexicon)))
    broken = tmp_path / "broken.arpa"
    broken.write_text(lm.read_text()[:200])
    with pytest.raises(LMError, match=r"broken\.arpa: not a KenLM language model \(ARPA or binary\): .+asr lm build"):
        BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(broken), lexicon=lexicon)))
    with pytest.raises(LMError, match=r"broken\.lexicon\.txt: cannot read the lexicon for the LM .*--lexicon"):
        BeamSearchDecoder(chars, resolve_decoder(DecoderConfig("beam", lm=str(broken))))
    with pytest.raises(ValueError, match="--lm is a beam-search option: the greedy decoder takes none"):
        resolve_decoder(DecoderConfig("greedy", lm=str(lm)))
    with pytest.raises(ValueError, match="'greedy', 'beam' or 'choice'"):
        resolve_decoder(DecoderConfig("viterbi"))
