"""Bad manifests: `asr check-manifest` lists every problem at once; training drops what CTC cannot align."""

import json
import logging

import numpy as np
import pytest
import torch

from asr.cli import main
from asr.core.audio import SAMPLE_RATE, write_audio
from asr.core.ctc import ctc_problems
from asr.core.manifest import ManifestError, Utterance, read_manifest
from asr.core.model import output_lengths
from asr.core.text import CharTokenizer, SentencePieceTokenizer, train_sentencepiece
from asr.inspection.check import check_manifest
from asr.training.config import load_experiment_config
from asr.training.datamodule import SpeechDataModule

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    cfg = load_experiment_config("tiny")
    cfg.model.vocab_size = len(CharTokenizer())
    return cfg


def steps(cfg, seconds: float) -> int:
    """Output steps of the tiny model for `seconds` of audio."""
    return int(output_lengths(cfg.model, torch.tensor([int(seconds * SAMPLE_RATE)])))


def row(audio: str, duration, text: str) -> str:
    return json.dumps({"audio_filepath": audio, "duration": duration, "text": text})


@pytest.fixture
def corpus(tmp_path, tiny):
    """A manifest with one problem of each kind on lines 2-9 between good lines 1 and 10."""
    for name in ("a.wav", "b.flac"):
        write_audio(tmp_path / name, np.zeros(SAMPLE_RATE, np.float32))
    (tmp_path / "text.wav").write_text("not audio at all\n" * 20)
    too_long = "AB" * steps(tiny, 1.0)  # 2 labels per output step
    lines = [
        row("a.wav", 1.0, "HELLO"),                          # 1 good
        row("missing.wav", 1.0, "HELLO").encode(),           # 2 audio: no such file
        row("text.wav", 1.0, "HELLO").encode(),              # 3 audio: not readable
        row("b.flac", 2.5, "HELLO").encode(),                # 4 duration
        row("a.wav", 1.0, too_long).encode(),                # 5 text: CTC
        row("a.wav", 1.0, "Привет мир").encode(),            # 6 text: nothing left after normalisation
        b'{"audio_filepath": "a.wav", "text": "HI"}',        # 7 format: missing key
        row("a.wav", 1.0, "CAFE").encode()[:-2] + b'\xe9"}',  # 8 format: Latin-1, not UTF-8
        b'{"audio_filepath": "a.wav", "duration": 1',        # 9 format: not JSON
        row("b.flac", 1.0, "WORLD").encode(),                # 10 good
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n\n")
    return manifest


EXPECTED = [(2, "audio", "missing.wav: no such file"), (3, "audio", "text.wav: not a readable audio file"),
            (4, "duration", "'duration' is 2.5 s but the audio lasts 1.000 s"), (5, "text", "CTC cannot align it"),
            (6, "text", "nothing is left of the transcript 'Привет мир'"), (7, "format", "missing key 'duration'"),
            (8, "format", "not UTF-8 text (byte 0xe9 at column"), (9, "format", "not valid JSON")]


def test_every_problem_is_found_with_its_line(corpus, tiny):
    lines, problems = check_manifest(corpus, CharTokenizer(), tiny.model)
    assert lines == 10
    assert [(p.where, p.kind) for p in problems] == [(f"{corpus} line {n}", kind) for n, kind, _ in EXPECTED]
    for p, (_, _, message) in zip(problems, EXPECTED):
        assert message in p.message


def test_asr_check_manifest_prints_every_problem_and_a_summary(corpus, capsys):
    assert main(["check-manifest", str(corpus), "--config", "tiny"]) == 1
    out = capsys.readouterr().out.splitlines()
    for line, (n, kind, message) in zip(out, EXPECTED):
        assert line.startswith(f"{corpus} line {n}: {kind}: ") and message in line
    assert out[-1] == f"{corpus}: 10 lines, 8 with problems (3 format, 2 audio, 1 duration, 2 text)"
    assert main(["check-manifest", str(corpus), "--config", "tiny", "--format", "json"]) == 1
    *rows, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in rows] == [kind for _, kind, _ in EXPECTED]
    assert summary == {"manifest": str(corpus), "lines": 10, "bad_lines": 8,
                       "problems": {"format": 3, "audio": 2, "duration": 1, "text": 2}, "warnings": 0}


def test_characters_normalisation_drops_beyond_punctuation_are_named_in_a_warning(tmp_path, capsys):
    write_audio(tmp_path / "a.wav", np.zeros(2 * SAMPLE_RATE, np.float32))
    texts = ["A BIG RED DOG 你好 | ~ @", "Hello, world! (It's 5.30, \u201cfine\u201d \u2014 caf\u00e9.)", "50% OFF"]
    (tmp_path / "m.jsonl").write_text("".join(row("a.wav", 2.0, text) + "\n" for text in texts))
    assert main(["check-manifest", str(tmp_path / "m.jsonl"), "--config", "tiny"]) == 0  # warnings fail no check
    out = capsys.readouterr().out.splitlines()
    why = ("from the transcript: the tokenizer has no symbols for them, so the text lacks words the audio says; "
           "spell them out (e.g. '@' as AT) or remove the line")
    assert out == [f"{tmp_path / 'm.jsonl'} line 1: warning: normalisation drops ['@', '|', '~', '你', '好'] {why}",
                   f"{tmp_path / 'm.jsonl'} line 3: warning: normalisation drops ['%'] {why}",
                   f"{tmp_path / 'm.jsonl'}: 3 lines, 0 with problems, 2 with warnings"]


def test_a_clean_manifest_passes(tmp_path, capsys):
    write_audio(tmp_path / "a.wav", np.zeros(SAMPLE_RATE, np.float32))
    (tmp_path / "m.jsonl").write_text(row("a.wav", 1.0, "HELLO") + "\n")
    assert main(["check-manifest", str(tmp_path / "m.jsonl"), "--config", "tiny"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'm.jsonl'}: 1 lines, 0 with problems\n"


def test_decode_finds_corruption_past_the_header(tmp_path, tiny):
    write_audio(tmp_path / "a.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 2 * SAMPLE_RATE))
    data = (tmp_path / "a.flac").read_bytes()
    (tmp_path / "a.flac").write_bytes(data[: len(data) // 2])  # the header still says 2 s
    (tmp_path / "m.jsonl").write_text(row("a.flac", 2.0, "HELLO") + "\n")
    assert check_manifest(tmp_path / "m.jsonl", CharTokenizer(), tiny.model)[1] == []
    [problem] = check_manifest(tmp_path / "m.jsonl", CharTokenizer(), tiny.model, decode=True)[1]
    assert problem.kind == "audio" and "a.flac: not a readable audio file" in problem.message


def test_a_manifest_that_is_not_utf8_names_the_line(tmp_path):
    (tmp_path / "m.jsonl").write_bytes(row("a.wav", 1.0, "HI").encode() + b"\n" + "é".encode("latin-1") + b"\n")
    with pytest.raises(ManifestError, match=r"m.jsonl line 2: not UTF-8 text \(byte 0xe9 at column 1\)"):
        read_manifest(tmp_path / "m.jsonl")


def test_ctc_needs_a_step_per_label_and_one_more_per_repeat(tiny, tmp_path):
    seconds = 1.0
    n = steps(tiny, seconds)
    texts = {"AB" * (n // 2): True, "AB" * (n // 2) + "AB": False,  # labels alone
             "L" * ((n + 1) // 2): True, "L" * ((n + 1) // 2 + 1): False}  # k repeats need 2k - 1 steps
    utterances = [Utterance(tmp_path / "a.wav", seconds, text) for text in texts]
    problems = ctc_problems(utterances, CharTokenizer(), tiny.model)
    assert [p is None for p in problems] == list(texts.values())
    # played 10% faster (speed perturbation), the audio gives fewer steps
    assert ctc_problems(utterances[:1], CharTokenizer(), tiny.model, speed=1.1)[0] is not None


def test_training_data_drops_what_ctc_cannot_align_and_missing_audio_with_a_count(corpus, tiny, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("asr"), "propagate", True)  # asr.cli.main stops it, for stderr alone
    tiny.data.train_manifests = tiny.data.val_manifests = [str(corpus.with_name("clean.jsonl"))]
    good = [line for n, line in enumerate(corpus.read_bytes().splitlines(), 1) if n in (1, 5, 2, 10)]
    corpus.with_name("clean.jsonl").write_bytes(b"\n".join(good) + b"\n")  # lines 1 (good), 2, 5, 10 (good)
    data = SpeechDataModule(tiny.data, CharTokenizer(), tiny.model)
    with caplog.at_level(logging.WARNING, logger="asr.training.datamodule"):
        data.setup("fit")
    assert [u.audio_filepath.name for u in data.train_set] == ["a.wav", "b.flac"]
    assert [u.text for u in data.val_set] == ["HELLO", "WORLD"]
    assert "dropped 2 of 4 utterances that cannot be trained on" in caplog.text
    batch = next(iter(data.train_dataloader()))
    assert batch.target_lengths.tolist() == [5, 5]


def test_characters_outside_the_vocabulary_are_found(tmp_path, tiny):
    texts = ["THE CAT SAT ON THE MAT", "A RED HAT", "IT IS UP TO THE DOG"] * 3  # no Q, no Z
    tokenizer = SentencePieceTokenizer.from_file(train_sentencepiece(texts, tmp_path / "sp.model", 30, "bpe"))
    write_audio(tmp_path / "a.wav", np.zeros(2 * SAMPLE_RATE, np.float32))
    (tmp_path / "m.jsonl").write_text(row("a.wav", 2.0, "THE CAT") + "\n" + row("a.wav", 2.0, "QUIZ") + "\n")
    [problem] = check_manifest(tmp_path / "m.jsonl", tokenizer, tiny.model)[1]
    assert problem.where.endswith("m.jsonl line 2") and problem.kind == "text"
    assert "characters ['Q', 'Z'] in 'QUIZ' are not in the SentencePiece vocabulary" in problem.message
