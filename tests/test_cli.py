"""The command line as a new user meets it: usage errors at parse time, devices, model files that are not
bundles, help, inputs and settings checked before anything heavy loads."""

import argparse
import json
import subprocess

import pytest
import soundfile
import torch
from conftest import run_asr

from asr.cli import build_parser, load_recognizer, main
from asr.core.paths import DEFAULT_MODEL
from asr.inference.export import export, load_source


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hello")
    subprocess.run(["espeak-ng", "-w", str(folder / "hello.wav"), "hello world this is a test"], check=True)
    return folder / "hello.wav"


def commands(parser: argparse.ArgumentParser):
    """(name, parser) of every command and sub-command, e.g. ("lm build", ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                subs = list(commands(sub))
                yield from ((f"{name} {n}", p) for n, p in subs) if subs else [(name, sub)]


def options():
    """(command, action) for every argument of every command but --help."""
    for name, parser in commands(build_parser()):
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                yield name, action


def test_every_numeric_option_is_checked_at_parse_time():
    unchecked = [f"{name} {'/'.join(a.option_strings)}" for name, a in options() if a.type in (int, float)]
    assert unchecked == []  # each takes number(...) with its range


@pytest.mark.parametrize("argv, message", [
    (["transcribe", "a.wav", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
    (["transcribe", "a.wav", "--batch-size", "-1"], "argument --batch-size: expected an integer >= 1, got '-1'"),
    (["evaluate", "m.jsonl", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
    (["evaluate", "m.jsonl", "--beam-size", "0"], "argument --beam-size: expected an integer >= 1"),
    (["evaluate", "m.jsonl", "--lm-weight", "nan"], "argument --lm-weight: expected a number, got 'nan'"),
    (["evaluate", "m.jsonl", "--beam-threshold", "-1"], "argument --beam-threshold: expected a number >= 0"),
    (["synth", "t.txt", "--out", "o", "--hours", "0"], "argument --hours: expected a number > 0"),
    (["synth", "t.txt", "--out", "o", "--hours", "1", "--dev-share", "1.5"],
     "argument --dev-share: expected a number >= 0 and <= 1"),
    (["tune-lm", "--manifest", "d", "--lm", "l", "--jobs", "0"], "argument --jobs: expected an integer >= 1"),
    (["tune-lm", "--manifest", "d", "--lm", "l", "--lm-weights", "0,nan"], "argument --lm-weights: expected comma"),
    (["lm", "build", "t.txt", "--out", "lm.arpa", "--order", "0"], "argument --order: expected an integer >= 1"),
    (["tokenizer", "m.jsonl", "--out", "sp.model", "--vocab-size", "1.5"],
     "argument --vocab-size: expected an integer"),
    (["transcribe", "a.wav", "--threads", "0"], "argument --threads: expected an integer >= 1"),
])
def test_an_out_of_range_number_is_a_usage_error_naming_the_option_and_its_range(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_every_option_has_help_and_transcribe_says_what_it_reads(capsys):
    assert [f"{name} {a.dest}" for name, a in options() if not a.help] == []
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(what in text for what in ("folder", "glob", "manifest (.jsonl)", "- (audio on stdin)"))
    assert "beam search with the model's own LM for a model with one beside it" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "asr 0.1.0"


def test_a_device_this_machine_lacks_is_named_with_the_ones_it_has(hello):
    from asr.inference.torch_network import available_devices

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: cuda:0 on a machine without one
    result = run_asr("transcribe", hello, "--device", missing, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"device '{missing}'" in result.stderr and f"devices here: {', '.join(available_devices())}" in result.stderr
    if not torch.cuda.is_available():
        assert "no CUDA device is available" in result.stderr
    result = run_asr("transcribe", hello, "--device", "gpu", check=False)
    assert result.returncode == 2 and "device 'gpu': not a device name" in result.stderr


@pytest.mark.slow
def test_an_onnx_export_runs_from_the_command_line_and_torchscript_is_refused_saying_what_it_is(hello, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install -e '.[train]'")
    model, tokenizer = load_source("default")
    onnx = export(model, tokenizer, tmp_path / "model.onnx", "onnx")
    args = ["transcribe", hello, "--decoder", "greedy", "--format", "json"]
    by_onnx = json.loads(run_asr(*args, "--model", onnx).stdout)
    by_bundle = json.loads(run_asr(*args, "--model", DEFAULT_MODEL, "--device", "cpu").stdout)
    assert by_onnx == by_bundle and "WORLD THIS IS A TEST" in by_onnx["text"]  # words, times and confidences
    run_asr(*args, "--model", onnx, "--plot", tmp_path / "plot.png")  # the front-end's settings are in its JSON
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")

    (tmp_path / "model.onnx.json").unlink()  # the graph alone: asr lacks its vocabulary
    result = run_asr("transcribe", hello, "--model", onnx, check=False)
    assert result.returncode == 2 and "an ONNX model without the model.onnx.json" in result.stderr

    scripted = export(model, tokenizer, tmp_path / "model.pt", "torchscript")
    result = run_asr("transcribe", hello, "--model", scripted, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a TorchScript module" in result.stderr and "--format onnx" in result.stderr


def test_missing_inputs_are_reported_before_a_model_loads(tmp_path):
    broken = tmp_path / "broken.safetensors"  # were the model loaded first, its error would come first
    broken.write_bytes(b"not a model")
    result = run_asr("transcribe", tmp_path / "nothere.wav", "--model", broken, check=False)
    assert result.returncode == 1
    assert f"{tmp_path / 'nothere.wav'}: no such file" in result.stderr and "broken" not in result.stderr
    result = run_asr("evaluate", tmp_path / "nothere.jsonl", "--model", broken, check=False)
    assert result.returncode == 2
    assert f"{tmp_path / 'nothere.jsonl'}: no such manifest" in result.stderr and "broken" not in result.stderr


def test_train_without_manifests_stops_before_the_trainer_starts(tmp_path):
    result = run_asr("train", "tiny", f"exp_dir={tmp_path / 'exp'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "asr train: error: no data.train_manifests: name the manifests to train on" in result.stderr
    assert "GPU available" not in result.stderr and not (tmp_path / "exp").exists()  # Lightning never started
    result = run_asr("train", "tiny", f"exp_dir={tmp_path / 'exp'}", f"data.train_manifests=[{tmp_path / 'a.jsonl'}]",
                     f"data.val_manifests=[{tmp_path / 'a.jsonl'}]", check=False)
    assert result.returncode == 2
    assert f"data.train_manifests: {tmp_path / 'a.jsonl'}: no such manifest" in result.stderr


def test_threads_sets_the_threads_of_the_model(hello):
    before = torch.get_num_threads()
    try:
        bundle = ["--model", str(DEFAULT_MODEL), "--device", "cpu"]
        assert main(["transcribe", str(hello), "--decoder", "greedy", *bundle, "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    onnx = load_recognizer(build_parser().parse_args(["transcribe", str(hello), "--threads", "2"]))
    assert onnx.network.session.get_session_options().intra_op_num_threads == 2


def test_the_onnx_runtime_takes_omp_num_threads_as_torch_does_unless_told(hello, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    onnx = load_recognizer(build_parser().parse_args(["transcribe", str(hello)]))
    assert onnx.network.session.get_session_options().intra_op_num_threads == 1


def test_model_default_names_the_shipped_model_as_no_model_option_does(hello):
    named = run_asr("transcribe", hello, "--model", "default", "--device", "cpu", "--format", "json")
    assert named.stdout == run_asr("transcribe", hello, "--device", "cpu", "--format", "json").stdout
    assert "WORLD THIS IS A TEST" in json.loads(named.stdout)["text"]


@pytest.mark.slow
def test_no_third_party_noise_on_stderr_when_it_is_not_a_terminal(hello, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("hello world\nthis is a test\n")
    built = run_asr("lm", "build", text, "--estimator", "kaldingram", "--out", tmp_path / "lm.arpa")
    assert built.stderr.count("\n") == 2 and "%|" not in built.stderr  # asr's two info lines, no progress bars
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(hello), "duration": soundfile.info(hello).duration,
                                        "text": "HELLO WORLD"}) + "\n")
    trained = run_asr("train", "tiny", f"data.train_manifests=[{manifest}]", f"data.val_manifests=[{manifest}]",
                      f"exp_dir={tmp_path / 'exp'}", "trainer.max_epochs=1", "data.num_workers=0")
    assert "Tip:" not in trained.stderr and "LeafSpec" not in trained.stderr
