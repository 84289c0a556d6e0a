"""The synthetic recipe's helpers: word accuracy split by whether training heard the word, and the check
that a corpus trained on shares no sentence or speaker with the dev and test splits scored on."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr.corpora.synth import synthesize_corpus

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "synthetic"
SEEN_WORDS = RECIPE / "seen_words.py"
WORDS = ["red", "green", "blue", "old", "small", "tall"], ["cats", "dogs", "boats", "trees", "houses", "clocks"]


def test_seen_words_counts_right_words_by_whether_training_heard_them(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"audio_filepath": "a.flac", "duration": 1.0, "text": "the cat sat"}) + "\n")
    hyps = tmp_path / "hyps.jsonl"
    rows = [{"reference": "THE CAT SAT ON A MAT", "hypothesis": "THE CAT SET ON A MAT EXTRA"},  # SAT wrong
            {"reference": "THE DOG", "hypothesis": ""}]  # both deleted
    hyps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run([sys.executable, str(SEEN_WORDS), str(hyps), str(train)], capture_output=True,
                            text=True, timeout=120, check=True)
    heard, never = result.stdout.splitlines()
    # heard: THE CAT SAT THE -> THE and CAT right in row 1 (2 of 4); never heard: ON A MAT DOG -> ON A MAT (3 of 4)
    assert heard.split() == ["heard", "in", "training:", "4", "words", "(", "50.0%),", "50.0%", "right"]
    assert never.split() == ["never", "heard:", "4", "words", "(", "50.0%),", "75.0%", "right"]


@pytest.fixture(scope="module")
def legs(tmp_path_factory) -> tuple[Path, Path]:
    """A small leg-1 corpus and a larger leg-2 corpus from one seed, as run.sh makes them (espeak-ng only)."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: run scripts/install_tts.sh")
    root = tmp_path_factory.mktemp("legs")
    sentences = [f"the {a} {b} near the {c} {d}" for a in WORDS[0] for b in WORDS[1] for c in WORDS[0]
                 for d in WORDS[1]]
    (root / "sentences.txt").write_text("\n".join(sentences) + "\n")
    options = dict(voices=["espeak-ng"], seed=5, jobs=2, augment_share=0.0)
    synthesize_corpus([root / "sentences.txt"], root / "leg1", 0.01, dev_share=0.2, test_share=0.2, **options)
    synthesize_corpus([root / "sentences.txt"], root / "leg2", 0.05, dev_share=0.1, test_share=0.1, **options)
    return root / "leg1", root / "leg2"


def check_disjoint(trained: Path, scored: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE / "check_disjoint.py"), str(trained), str(scored)],
                          capture_output=True, text=True, timeout=120)


def test_check_disjoint_passes_corpora_made_as_the_recipe_makes_them(legs):
    leg1, leg2 = legs
    result = check_disjoint(leg1, leg2)
    assert result.returncode == 0, result.stderr
    dev, test = result.stdout.splitlines()
    assert dev.startswith("dev: ") and test.startswith("test: ")
    assert " 0 read by " in dev and dev.endswith("speakers in its training split: none"), dev


def copy_corpus_files(corpus: Path, out: Path) -> Path:
    """The text files of `corpus` (manifests, SPEAKERS.txt, skipped.txt), without its audio."""
    out.mkdir()
    for path in corpus.glob("*.*"):
        shutil.copy(path, out / path.name)
    return out


@pytest.mark.parametrize("leak", ["sentence", "speaker"])
def test_check_disjoint_fails_when_training_read_a_scored_sentence_or_speaker(legs, leak, tmp_path):
    leg1, leg2 = legs
    trained = copy_corpus_files(leg1, tmp_path / "leg1")
    if leak == "sentence":  # an engine failed on a dev sentence: it was read, though not trained on
        dev_text = json.loads((leg2 / "dev.jsonl").read_text().splitlines()[0])["text"]
        with (trained / "skipped.txt").open("a") as f:
            f.write(f"espeak-ng:en\t{dev_text}\tespeak-ng exited 1\n")
    else:  # a test speaker (voice, pitch, rate) also in the training split, under another id
        row = next(r for r in (leg2 / "SPEAKERS.txt").read_text().splitlines() if "| test  |" in r)
        with (trained / "SPEAKERS.txt").open("a") as f:
            f.write(" 9999 |" + row.replace("| test  |", "| train |").split("|", 1)[1] + "\n")
    result = check_disjoint(trained, leg2)
    assert result.returncode != 0
    assert "shares sentences or speakers with" in result.stderr


def test_check_disjoint_names_a_missing_corpus(legs, tmp_path):
    result = check_disjoint(tmp_path / "nowhere", legs[1])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'nowhere' / 'train.jsonl'}: no such manifest" in result.stderr


@pytest.mark.parametrize("listing", ["SPEAKERS.txt", "skipped.txt"])
def test_check_disjoint_names_a_missing_or_malformed_listing(legs, listing, tmp_path):
    trained = copy_corpus_files(legs[0], tmp_path / "leg1")
    if listing == "SPEAKERS.txt":
        (trained / listing).unlink()
        expected = f"{trained / listing}: no such file"
    else:
        (trained / listing).write_text("espeak-ng:en-us with no text or error\n")
        expected = f"{trained / listing}:1: expected 3 fields separated by '\\t'"
    result = check_disjoint(trained, legs[1])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("script, env, message", [
    ("run.sh", {"TEXT_DIR": "{tmp}/text"}, "the corpus stage reads English sentences"),  # what the data is
    ("run.sh", {"TEXT_DIR": "{tmp}/text"}, "from TEXT_DIR={tmp}/text, which holds no *.txt"),
    ("make_corpus.sh", {"TEXT_DIR": "{tmp}/text"}, "no sentences in TEXT_DIR={tmp}/text: the TTS engines read English"),
    ("make_corpus.sh", {"HELD_OUT": "{tmp}/real.jsonl"}, "HELD_OUT names {tmp}/real.jsonl, which is not there"),
    ("make_corpus.sh", {"REAL_DEV": "{tmp}/real.jsonl"}, "HELD_OUT names {tmp}/real.jsonl, which is not there"),
])
def test_the_recipe_without_its_data_says_which_variable_points_to_it(tmp_path, script, env, message):
    (tmp_path / "sentences").mkdir()  # where TEXT_DIR points unless the case says otherwise
    (tmp_path / "sentences" / "a.txt").write_text("the cat sat on the mat\n")
    env = {"TEXT_DIR": str(tmp_path / "sentences")} | {key: value.format(tmp=tmp_path) for key, value in env.items()}
    args = [] if script == "run.sh" else ["0.001", str(tmp_path / "corpus")]  # run.sh: the corpus stage first
    result = subprocess.run(["bash", str(RECIPE / script), *args], env=os.environ | env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "corpus").exists()
    assert "== stage" not in result.stderr  # run.sh writes under data/, not tmp_path: no stage was started


def test_run_sh_names_its_stages_when_given_one_it_lacks():
    result = subprocess.run(["bash", str(RECIPE / "run.sh"), "lm", "corpus"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "the stages are, in order: corpus train continue" in result.stderr
