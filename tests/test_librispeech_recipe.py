"""recipes/librispeech: downloads that resume and verify, then the prepare, tokenizer and LM stages,
run on tiny LibriSpeech-layout tarballs served over a local HTTP server with Range support."""

import functools
import gzip
import hashlib
import http.server
import logging
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from asr.core.bundle import load_bundle
from asr.core.manifest import read_manifest
from asr.core.text import SentencePieceTokenizer
from asr.corpora.librispeech import (
    LIBRISPEECH_SHA256,
    DownloadError,
    download,
    download_librispeech,
    extract,
    read_checksums,
    verify,
)
from asr.training.config import load_experiment_config

REPO = Path(__file__).resolve().parent.parent
SUBSETS = {"train-clean-100": range(0, 16), "dev-clean": range(16, 20)}  # utterances of the fixture's 20
LM_SENTENCES = ["THE CAT SAT ON THE MAT", "A BIG DOG RAN HOME", "SHE READS BOOKS AT NIGHT"] * 20


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=N-` support; logs (path, range) of each GET in server.requests and
    breaks off the body after server.cut_after bytes once, when that is set (a dropped connection)."""

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        data, start = path.read_bytes(), 0
        self.server.requests.append((self.path, self.headers.get("Range")))
        if byte_range := self.headers.get("Range"):
            start = int(byte_range.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self.send_error(416)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.cut_after is not None:
            body, self.server.cut_after = body[: self.server.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(librispeech_tree, tmp_path_factory):
    """A local OpenSLR look-alike: ROOT/12/{train-clean-100,dev-clean}.tar.gz, ROOT/11/librispeech-lm-norm.txt.gz,
    and ROOT/SHA256SUMS for them; yields (server, root)."""
    root = tmp_path_factory.mktemp("openslr")
    (root / "12").mkdir()
    (root / "11").mkdir()
    chapter = librispeech_tree / "train-tiny" / "19" / "198"
    lines = (chapter / "19-198.trans.txt").read_text().splitlines()
    for subset, utterances in SUBSETS.items():
        with tarfile.open(root / "12" / f"{subset}.tar.gz", "w:gz") as tar:
            folder = f"LibriSpeech/{subset}/19/198"
            for i in utterances:
                tar.add(chapter / f"19-198-{i:04d}.flac", f"{folder}/19-198-{i:04d}.flac")
            trans = root / "trans.txt"
            trans.write_text("".join(lines[i] + "\n" for i in utterances))
            tar.add(trans, f"{folder}/19-198.trans.txt")
            trans.unlink()
    (root / "11" / "librispeech-lm-norm.txt.gz").write_bytes(gzip.compress("\n".join(LM_SENTENCES).encode()))
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted((root / "12").glob("*.gz"))]
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=root))
    server.requests, server.cut_after = [], None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, root
    server.shutdown()


def url_of(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{path}"


def test_interrupted_download_resumes_with_a_range_request(mirror, tmp_path):
    server, root = mirror
    archive = root / "12" / "dev-clean.tar.gz"
    size, sha = archive.stat().st_size, read_checksums(root / "SHA256SUMS")["dev-clean.tar.gz"]
    server.requests.clear()
    server.cut_after = size // 2
    dest = tmp_path / "dev-clean.tar.gz"
    with pytest.raises(DownloadError, match="run again to resume"):
        download(url_of(server, "12/dev-clean.tar.gz"), dest, sha)
    part = tmp_path / "dev-clean.tar.gz.part"
    assert part.stat().st_size == size // 2 and not dest.exists()

    assert download(url_of(server, "12/dev-clean.tar.gz"), dest, sha) == dest
    assert server.requests == [("/12/dev-clean.tar.gz", None), ("/12/dev-clean.tar.gz", f"bytes={size // 2}-")]
    assert dest.read_bytes() == archive.read_bytes() and not part.exists()
    assert (tmp_path / "dev-clean.tar.gz.sha256").read_text() == f"{sha}  dev-clean.tar.gz\n"

    server.requests.clear()
    download(url_of(server, "12/dev-clean.tar.gz"), dest, sha)  # there and verified: no request at all
    assert server.requests == []


def test_wrong_checksum_is_refused_and_nothing_is_kept(mirror, tmp_path):
    server, _ = mirror
    dest = tmp_path / "dev-clean.tar.gz"
    # the official dev-clean checksum (from torchaudio) cannot match this tiny look-alike
    with pytest.raises(DownloadError, match=f"not the expected {LIBRISPEECH_SHA256['dev-clean']}"):
        download(url_of(server, "12/dev-clean.tar.gz"), dest, LIBRISPEECH_SHA256["dev-clean"])
    assert not dest.exists() and not (tmp_path / "dev-clean.tar.gz.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(url_of(server, "12/no-such-subset.tar.gz"), dest)


def run_recipe(*stages: str, env: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, **env}  # the Python asr is installed in, not python3 on the PATH
    result = subprocess.run([str(REPO / "recipes/librispeech/run.sh"), *stages], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_recipe_downloads_prepares_and_trains_tokenizer_and_lm(mirror, tmp_path, caplog):
    server, root = mirror
    data = tmp_path / "librispeech"
    env = {"MIRROR": url_of(server, ""), "CHECKSUMS": str(root / "SHA256SUMS"), "DATA": str(data),
           "SUBSETS": " ".join(SUBSETS), "TRAIN": "train-clean-100", "VOCAB": "40", "LM_ORDER": "2"}
    run_recipe("download", "lm", env=env)

    for subset, utterances in SUBSETS.items():
        rows = read_manifest(data / f"{subset}.jsonl")
        assert [u.audio_filepath.name for u in rows] == [f"19-198-{i:04d}.flac" for i in utterances]
        assert all(u.audio_filepath.is_file() and 0.3 < u.duration < 5 for u in rows)
    train = read_manifest(data / "train-clean-100.jsonl")
    assert train[0].text == "HELLO WORLD"

    tokenizer = SentencePieceTokenizer.from_file(data / "sp40.model")
    assert len(tokenizer) == 40 + 1  # the pieces and the CTC blank
    assert all(tokenizer.decode(tokenizer.encode(u.text)) == u.text for u in train)
    assert (data / "download" / "librispeech-lm-norm.txt").read_text().splitlines() == LM_SENTENCES
    assert (data / "lm-2gram.bin").stat().st_size > 0
    assert "MAT M A T |" in (data / "lm-2gram.lexicon.txt").read_text()

    server.requests.clear()  # a rerun of the download stage skips every verified download and finished extraction
    with caplog.at_level(logging.INFO, logger="asr.corpora.librispeech"):
        download_librispeech(data / "download", list(SUBSETS), True, url_of(server, ""),
                             read_checksums(root / "SHA256SUMS"))
    assert server.requests == []
    assert caplog.text.count("already downloaded and verified") == 3 and caplog.text.count("already extracted") == 3


def test_unsafe_archive_and_broken_gzip_are_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("outside")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, "../escaped.txt")
    with pytest.raises(DownloadError, match="evil.tar.gz: cannot extract"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "evil.tar.gz.extracted").exists()

    truncated = tmp_path / "lm.txt.gz"
    truncated.write_bytes(gzip.compress(b"THE CAT SAT\n" * 1000)[:-20])
    with pytest.raises(DownloadError, match="not a complete gzip file"):
        verify(truncated, None, "http://mirror/11/lm.txt.gz")


@pytest.mark.parametrize("name", ["ds2", str(REPO / "recipes/librispeech/small-100h.yaml")])
def test_recipe_configs_train_with_specaugment_and_speed_perturbation(name):
    cfg = load_experiment_config(name)
    assert cfg.model.frontend.freq_masks > 0 and cfg.model.frontend.time_masks > 0
    assert cfg.data.speed_perturb == [0.9, 1.0, 1.1] and cfg.data.max_batch_seconds > 0


@pytest.mark.slow
def test_recipe_trains_on_its_manifests_with_its_sentencepiece_model(mirror, tmp_path):
    """The train stage, run with tiny's network for one epoch, gives the config the recipe's SentencePiece
    model and manifests (conf/ds2.yaml, its default, says neither)."""
    server, root = mirror
    data, exp = tmp_path / "librispeech", tmp_path / "exp"
    env = {"MIRROR": url_of(server, ""), "CHECKSUMS": str(root / "SHA256SUMS"), "DATA": str(data),
           "SUBSETS": " ".join(SUBSETS), "TRAIN": "train-clean-100", "VOCAB": "40", "LM_TEXT": "0",
           "CONFIG": "tiny", "EXP": str(exp), "OMP_NUM_THREADS": "1",
           "TRAIN_ARGS": "trainer.max_epochs=1 data.val_manifests=[" + str(data / "dev-clean.jsonl") + "]"}
    run_recipe("download", "train", env=env)
    _, tokenizer = load_bundle(exp / "model.safetensors")
    assert tokenizer.to_dict() == SentencePieceTokenizer.from_file(data / "sp40.model").to_dict()
    logged = (exp / "csv" / "version_0" / "hparams.yaml").read_text()
    assert str(data / "train-clean-100.jsonl") in logged
