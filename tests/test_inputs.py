"""What `asr transcribe` accepts: files, folders, glob patterns, manifests and audio on standard input."""

import json
import subprocess
import sys

import pytest
from conftest import run_asr

import torch

from asr.cli import main
from asr.core.bundle import save_bundle
from asr.core.model import DeepSpeech2
from asr.core.inputs import find_audio
from asr.core.text import CharTokenizer
from asr.training.config import load_experiment_config


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    for name, sentence in {"one": "good morning", "two": "thank you very much"}.items():
        subprocess.run(["espeak-ng", "-w", str(folder / f"{name}.wav"), sentence], check=True)
    return folder


def lines(result) -> dict[str, str]:
    """path -> text of `asr transcribe` output for several files."""
    return dict(line.split("\t") for line in result.stdout.strip().splitlines())


def test_a_glob_pattern_a_folder_and_a_manifest_name_the_same_files(recordings):
    by_folder = lines(run_asr("transcribe", recordings, "--decoder", "greedy"))
    by_glob = lines(run_asr("transcribe", recordings / "*.wav", "--decoder", "greedy"))  # unexpanded by a shell
    manifest = recordings / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{n}.wav", "duration": 1.0, "text": ""}) + "\n"
                                for n in ("two", "one")))
    by_manifest = lines(run_asr("transcribe", manifest, "--decoder", "greedy"))
    assert sorted(by_folder) == sorted(by_glob) == sorted(by_manifest) == [str(recordings / f"{n}.wav")
                                                                         for n in ("one", "two")]
    assert by_folder == by_glob == by_manifest
    assert list(by_manifest) == [str(recordings / "two.wav"), str(recordings / "one.wav")]  # manifest order


def test_a_pattern_yields_only_files(tmp_path):
    (tmp_path / "calls" / "a.wav").mkdir(parents=True)  # a folder named like audio
    (tmp_path / "calls" / "b.wav").write_bytes(b"RIFF")
    assert list(find_audio([tmp_path / "calls" / "*.wav"])) == [tmp_path / "calls" / "b.wav"]


def test_a_pattern_that_matches_nothing_is_reported_by_name(recordings):
    result = run_asr("transcribe", recordings / "*.flac", check=False)
    assert result.returncode == 1 and "*.flac" in result.stderr


def test_audio_on_standard_input(recordings):
    expected = run_asr("transcribe", recordings / "one.wav").stdout
    with open(recordings / "one.wav", "rb") as audio:
        result = subprocess.run([sys.executable, "-m", "asr", "transcribe", "-"], stdin=audio, capture_output=True,
                                text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == expected and expected.strip()


def test_output_dir_mirrors_the_folders_under_each_input(recordings, tmp_path):
    tree = tmp_path / "tree"
    for speaker in ("s1", "s2"):
        (tree / speaker).mkdir(parents=True)
        (tree / speaker / "u.wav").write_bytes((recordings / "one.wav").read_bytes())
    run_asr("transcribe", tree, recordings / "two.wav", "--decoder", "greedy", "--output-dir", tmp_path / "out")
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.txt"))
    assert written == ["s1/u.txt", "s2/u.txt", "two.txt"]  # a file named alone goes to the top
    run_asr("transcribe", f"{tmp_path}/*/**/*.wav", "--decoder", "greedy", "--output-dir", tmp_path / "by-glob")
    written = sorted(str(p.relative_to(tmp_path / "by-glob")) for p in (tmp_path / "by-glob").rglob("*.txt"))
    assert written == ["tree/s1/u.txt", "tree/s2/u.txt"]  # under the pattern's fixed folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A randomly initialised tiny model's bundle: what it prints does not matter here, only how."""
    torch.manual_seed(0)
    return save_bundle(tmp_path_factory.mktemp("model") / "tiny.safetensors",
                       DeepSpeech2(load_experiment_config("tiny").model).eval(), CharTokenizer())


@pytest.mark.parametrize("inputs, named", [
    (["{one}"], None),  # one file named alone: its text alone
    (["{one}", "{two}"], ["{one}", "{two}"]),  # else PATH<TAB>TEXT for every file
    (["{folder}"], ["{folder}/one.wav"]),  # a folder, a pattern or a manifest is many, even holding one file
    (["{folder}/*.wav"], ["{folder}/one.wav"]),
    (["{manifest}"], ["{folder}/one.wav"]),
])
def test_one_file_named_alone_prints_its_text_anything_else_path_tab_text(tiny, recordings, tmp_path, capsys,
                                                                          inputs, named):
    files = {"one": recordings / "one.wav", "two": recordings / "two.wav", "folder": tmp_path / "solo",
             "manifest": tmp_path / "solo.jsonl"}
    files["folder"].mkdir()
    (files["folder"] / "one.wav").write_bytes(files["one"].read_bytes())
    files["manifest"].write_text(json.dumps({"audio_filepath": "solo/one.wav", "duration": 1.0, "text": ""}) + "\n")
    code = main(["transcribe", *(item.format(**files) for item in inputs), "--model", str(tiny), "--quiet"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    if named is None:
        assert len(out) == 1 and "\t" not in out[0]
    else:
        assert [line.split("\t")[0] for line in out] == [path.format(**files) for path in named]
        assert all(line.count("\t") == 1 for line in out)
