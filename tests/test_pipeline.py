"""End to end through the real command line: prepare, train until it overfits, export, evaluate, transcribe."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, run_asr

pytestmark = pytest.mark.slow


def metrics(exp_dir: Path) -> list[dict]:
    """Rows of the CSV log of every run in the experiment, oldest first."""
    rows = []
    for path in sorted((exp_dir / "csv").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(path.open()))
    return rows


def train_args(manifest: Path, exp_dir: Path, epochs: int) -> list[str]:
    return ["train", "tiny", f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
            f"exp_dir={exp_dir}", f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def manifest(librispeech_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    run_asr("prepare", "librispeech", librispeech_tree, out)
    return out / "train-tiny.jsonl"


def test_prepare_writes_a_manifest_of_the_corpus(manifest):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [row["text"] for row in rows] == SENTENCES
    assert all(Path(row["audio_filepath"]).exists() and 0.5 < row["duration"] < 3 for row in rows)


def test_train_overfits_then_export_evaluate_and_transcribe(manifest, librispeech_tree, tmp_path):
    exp = tmp_path / "exp"
    result = run_asr(*train_args(manifest, exp, 45))
    bundle = exp / "model.safetensors"
    assert result.stdout.strip().endswith(str(bundle))
    val_cer = [float(row["val/cer"]) for row in metrics(exp) if row.get("val/cer")]
    assert val_cer[0] > 0.5 and val_cer[-1] < 0.1, val_cer  # it learned, from nothing to (nearly) right

    exported = tmp_path / "exported.safetensors"
    run_asr("export", exp / "checkpoints" / "last.ckpt", exported)
    hyps = tmp_path / "hyps.jsonl"
    scores = json.loads(run_asr("evaluate", "--model", exported, manifest, "--out", hyps, "--format", "json").stdout)
    assert scores["utterances"] == 20 and scores["cer"] < 0.1
    rows = [json.loads(line) for line in hyps.read_text().splitlines()]
    assert [row["reference"] for row in rows] == SENTENCES
    assert sum(row["hypothesis"] == row["reference"] for row in rows) >= 14

    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    out = run_asr("transcribe", "--model", bundle, librispeech_tree, broken, "--format", "json", check=False)
    assert out.returncode == 1 and "broken.wav" in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 20 and {"audio_filepath", "text", "duration"} <= set(lines[0])
    assert sum(line["text"] in SENTENCES for line in lines) >= 14

    first = sorted(librispeech_tree.rglob("*.flac"))[0]
    assert run_asr("transcribe", "--model", bundle, first).stdout.strip() == SENTENCES[0]


def test_resume_continues_from_the_last_checkpoint(manifest, tmp_path):
    exp = tmp_path / "exp"
    run_asr(*train_args(manifest, exp, 2))
    first = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)
    run_asr(*train_args(manifest, exp, 4), "--resume")
    last = torch.load(exp / "checkpoints" / "last.ckpt", weights_only=True)
    assert (first["epoch"], last["epoch"]) == (1, 3)  # the index of the epoch each was saved in
    assert last["global_step"] == 2 * first["global_step"]
    resumed_epochs = {row["epoch"] for row in csv.DictReader((exp / "csv" / "version_1" / "metrics.csv").open())
                      if row["epoch"]}
    assert resumed_epochs == {"2", "3"}  # the second run did not start over


def test_bad_config_key_fails_before_training(manifest, tmp_path):
    out = run_asr(*train_args(manifest, tmp_path / "exp", 1), "model.rnn_hiden=3", check=False)
    assert out.returncode == 2 and "unknown config key 'model.rnn_hiden'" in out.stderr
    assert not (tmp_path / "exp").exists()


def test_sentencepiece_tokenizer_is_trained_and_travels_in_the_bundle(manifest, tmp_path):
    from asr.core.bundle import load_bundle
    from asr.core.text import SentencePieceTokenizer

    sp = tmp_path / "sp.model"
    run_asr("tokenizer", manifest, "--out", sp, "--vocab-size", 40, "--type", "bpe")
    exp = tmp_path / "exp"
    run_asr(*train_args(manifest, exp, 1), "tokenizer.kind=sentencepiece", f"tokenizer.model={sp}")
    model, tokenizer = load_bundle(exp / "model.safetensors")
    assert isinstance(tokenizer, SentencePieceTokenizer)
    assert model.cfg.vocab_size == len(tokenizer) == 41  # 40 pieces + the CTC blank
    assert tokenizer.decode(tokenizer.encode(SENTENCES[3])) == SENTENCES[3]


def test_resume_takes_the_newest_of_last_and_a_slurm_hpc_checkpoint(tmp_path):
    from asr.training.config import ExperimentConfig
    from asr.training.train import last_checkpoint

    cfg = ExperimentConfig(exp_dir=str(tmp_path))
    assert last_checkpoint(cfg) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    for i, path in enumerate([tmp_path / "hpc_ckpt_1.ckpt", last, tmp_path / "hpc_ckpt_2.ckpt"]):
        path.write_bytes(b"")
        os.utime(path, ns=(i * 10**9, i * 10**9))
        assert last_checkpoint(cfg) == path  # each newer than those before it
    os.utime(last, ns=(10**10, 10**10))
    assert last_checkpoint(cfg) == last


def test_a_streaming_model_trains_from_its_config_and_streams_what_it_learned(manifest, librispeech_tree, tmp_path):
    """conf/streaming.yaml's network (forward-only LSTMs, a lookahead, global statistics), sized down, overfits the
    tiny corpus; its ONNX export then streams the words it learned."""
    from asr.core.audio import load_audio
    from asr.inference.transcribe import load_model

    exp = tmp_path / "exp"
    run_asr("train", "streaming", f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
            f"exp_dir={exp}", "trainer.max_epochs=45", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
            "model.rnn_layers=2", "model.rnn_hidden=128", "model.conv_channels=[16, 16]", "model.frontend.n_mels=40",
            "model.conv_kernels=[[11, 11], [11, 11]]", "data.max_batch_seconds=6", "data.num_workers=0",
            "model.frontend.freq_masks=0", "model.frontend.time_masks=0", "model.dropout=0.0", "optim.lr=3e-3")
    val_cer = [float(row["val/cer"]) for row in metrics(exp) if row.get("val/cer")]
    assert val_cer[-1] < 0.2, val_cer
    onnx = run_asr("export", exp / "model.safetensors", tmp_path / "s.onnx", "--format", "onnx").stdout.strip()
    recognizer = load_model(onnx)
    first = sorted(librispeech_tree.rglob("*.flac"))[0]
    stream = recognizer.stream()
    wave = load_audio(first)
    events = [e for start in range(0, len(wave), 1600) for e in stream.feed(wave[start:start + 1600])]
    events += stream.finish()
    whole = next(recognizer.transcribe(first)).text  # the same model on the whole file
    assert events[-1].type == "final" and events[-1].text == whole and "WORLD" in whole  # SENTENCES[0]: HELLO WORLD
    assert any(e.type == "partial" for e in events)
