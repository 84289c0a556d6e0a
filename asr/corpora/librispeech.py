"""LibriSpeech: downloading it (HTTP(S) with resume, sha256 verification, atomic rename and safe extraction)
and preparing manifests from its layout.

A download goes to NAME.part; an interrupted one is continued with an HTTP Range request on the next
run; the finished file is hashed and renamed to NAME only if its sha256 is the expected one, and the
verified hash is written beside it (NAME.sha256, `sha256sum -c` format) so the next run skips it
without reading it again. Used by recipes/librispeech through `asr download librispeech`.
"""

import gzip
import hashlib
import logging
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

from asr.core.audio import HEADER_READ_THREADS, audio_duration
from asr.core.config import ConfigError
from asr.core.manifest import ManifestError, Utterance, write_manifest
from asr.core.text import normalize
from asr.core.errors import AsrError

log = logging.getLogger(__name__)

MIRROR = "https://www.openslr.org/resources"  # OpenSLR: SLR12 = LibriSpeech audio, SLR11 = its LM resources
# sha256 of the SLR12 archives, copied from torchaudio 2.11 (torchaudio/datasets/librispeech.py, _CHECKSUMS):
# the checksums torchaudio's own LibriSpeech dataset verifies its downloads against.
LIBRISPEECH_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
# The normalised LM text (800 M words). No checksum of it is at hand offline: it is checked by reading
# the whole gzip stream (its CRC-32 and length), and the sha256 found is recorded beside it.
LM_TEXT = "librispeech-lm-norm.txt.gz"
CHUNK = 1 << 20  # bytes per read
TIMEOUT = 60  # seconds without data before a download is given up (and can be resumed)


class DownloadError(AsrError, RuntimeError):
    """A download that failed, was cut short, or whose content is not what was expected."""


def librispeech_archives(subsets: list[str], lm_text: bool = False, mirror: str = MIRROR,
                         checksums: dict[str, str] | None = None) -> list[tuple[str, str | None]]:
    """(url, expected sha256 or None) of each archive; `checksums` ({file name: sha256}) replaces the
    official ones, e.g. for a mirror serving its own archives."""
    unknown = sorted(set(subsets) - set(LIBRISPEECH_SHA256))
    if unknown:
        raise ConfigError(f"unknown LibriSpeech subset {unknown[0]!r}; the subsets are {', '.join(LIBRISPEECH_SHA256)}")
    checksums, mirror = checksums or {}, mirror.rstrip("/")
    archives = [(f"{mirror}/12/{s}.tar.gz", checksums.get(f"{s}.tar.gz", LIBRISPEECH_SHA256[s])) for s in subsets]
    if lm_text:
        archives.append((f"{mirror}/11/{LM_TEXT}", checksums.get(LM_TEXT)))
    return archives


def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """{file name: sha256} from a `sha256sum` output file ("HASH  NAME" lines)."""
    sums = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a `sha256sum` output file (not UTF-8 text)") from None
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            if len(digest) != 64 or not name.strip():
                raise ConfigError(f"{path} line {n}: expected 'SHA256  FILE_NAME', got {line!r}")
            sums[Path(name.strip().lstrip("*")).name] = digest.lower()
    return sums


def download(url: str, dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """Fetch `url` to `dest` unless it is there and verified; resume a partial download; verify, rename.

    Raises DownloadError when the transfer fails (the partial file is kept for the next try) or when the
    content does not match `sha256` (the partial file is deleted). Without `sha256` a .gz file is checked
    by decompressing it.
    """
    dest = Path(dest)
    recorded = dest.with_name(dest.name + ".sha256")
    if dest.exists():
        if recorded.exists() and (sha256 is None or recorded.read_text().split()[0] == sha256):
            log.info("%s: already downloaded and verified", dest)
            return dest
        digest = verify(dest, sha256, url)  # there, but not (yet) known to be right
        recorded.write_text(f"{digest}  {dest.name}\n")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    fetch(url, part)
    try:
        digest = verify(part, sha256, url)
    except DownloadError:
        part.unlink()
        raise
    os.replace(part, dest)
    recorded.write_text(f"{digest}  {dest.name}\n")
    return dest


def fetch(url: str, part: Path) -> None:
    """Append the rest of `url` to `part`, asking for it with a Range request when `part` has a beginning."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing after `offset`: the file was complete
            return
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from None
    with response:
        resumed = response.status == 206
        if offset and not resumed:
            log.warning("%s: the server ignored the range request; downloading from the start", url)
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else None
        if resumed:
            log.info("%s: resuming at byte %d", url, start)
        done = start
        bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                       console=Console(stderr=True), disable=not sys.stderr.isatty())
        with part.open("ab" if resumed else "wb") as f, bar:
            task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=start)
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar.advance(task, len(chunk))
            except OSError as err:  # includes http.client.IncompleteRead and timeouts
                raise DownloadError(f"{url}: interrupted after {done} bytes ({err}); "
                                    f"run again to resume from {part}") from None
    if total is not None and done != total:
        raise DownloadError(f"{url}: got {done} of {total} bytes; run again to resume from {part}")


def verify(path: Path, sha256: str | None, url: str) -> str:
    """The sha256 of `path`, after checking it equals `sha256` (or, with none, that a .gz decompresses)."""
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(f"{path}: sha256 {digest} is not the expected {sha256} for {url}; the file is "
                            "corrupt or not the published archive (it has been removed if it was a download)")
    if sha256 is None and path.name.removesuffix(".part").endswith(".gz"):
        try:
            with gzip.open(path) as f:
                while f.read(CHUNK):
                    pass
        except (OSError, EOFError) as err:
            raise DownloadError(f"{path}: not a complete gzip file ({err}) from {url}") from None
    return digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def safe_extraction(tar: tarfile.TarFile, out_dir: Path) -> dict:
    """extractall's arguments that refuse absolute paths, paths out of out_dir, links and devices: the "data" filter
    where Python has it (3.11.4, 3.10.12 and later), else the members checked here first (Debian 12's 3.11.2)."""
    if hasattr(tarfile, "data_filter"):
        return {"filter": "data"}
    root = out_dir.resolve()
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()) or not (root / member.name).resolve().is_relative_to(root):
            raise tarfile.TarError(f"{member.name}: not a plain file or folder inside the archive's folder")
    return {}


def extract(archive: Path, out_dir: Path) -> Path:
    """Unpack a .tar.gz into `out_dir` (LibriSpeech archives hold LibriSpeech/SUBSET/...) or gunzip a .gz
    next to it; a marker file makes a finished extraction a no-op next time. Returns `out_dir` or the file."""
    marker = archive.with_name(archive.name + ".extracted")
    if archive.name.endswith(".tar.gz"):
        target = out_dir
    else:
        target = archive.with_name(archive.name.removesuffix(".gz"))
    if marker.exists():
        log.info("%s: already extracted", archive)
        return target
    log.info("extracting %s", archive)
    try:
        if target is out_dir:
            with tarfile.open(archive) as tar:
                tar.extractall(out_dir, **safe_extraction(tar, out_dir))
        else:
            part = target.with_name(target.name + ".part")
            with gzip.open(archive) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            os.replace(part, target)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DownloadError(f"{archive}: cannot extract ({err}); delete it to download it again") from None
    marker.touch()
    return target


def download_librispeech(out_dir: str | os.PathLike, subsets: list[str], lm_text: bool = False,
                         mirror: str = MIRROR, checksums: dict[str, str] | None = None) -> list[Path]:
    """Download, verify and extract LibriSpeech subsets (and the LM text) into `out_dir`:
    out_dir/LibriSpeech/SUBSET/... and out_dir/librispeech-lm-norm.txt. Returns what was extracted."""
    out_dir = Path(out_dir)
    extracted = []
    for url, sha256 in librispeech_archives(subsets, lm_text, mirror, checksums):
        archive = download(url, out_dir / url.rsplit("/", 1)[1], sha256)
        extracted.append(extract(archive, out_dir))
    return list(dict.fromkeys(extracted))


def read_transcripts(path: Path) -> list[str]:
    """The lines of a LibriSpeech *.trans.txt file; ManifestError if it is not UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                            "save the transcripts as UTF-8") from None


def prepare_librispeech(root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write `out_dir/<subset>.jsonl` for every subset of a LibriSpeech-layout folder.

    ROOT is `LibriSpeech/` (several subsets) or one subset folder; the layout is
    SUBSET/SPEAKER/CHAPTER/{SPEAKER-CHAPTER.trans.txt, SPEAKER-CHAPTER-NNNN.flac}. Durations come
    from the audio headers, text is normalised. Transcript lines without audio are skipped with a
    warning. Returns {subset: manifest path}, sorted by subset.
    """
    root, out_dir = Path(root), Path(out_dir)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(
            f"{root}: no *.trans.txt transcripts found; point ROOT at a folder in LibriSpeech layout "
            "(LibriSpeech/ or a subset such as LibriSpeech/train-clean-100)"
        )
    rows = []  # (subset, audio path, text)
    for trans in transcripts:
        subset = trans.absolute().parents[2].name
        for n, line in enumerate(read_transcripts(trans), 1):
            utt_id, _, text = line.strip().partition(" ")
            if not utt_id:
                continue
            audio = trans.parent / f"{utt_id}.flac"
            if audio.is_file():
                rows.append((subset, audio, normalize(text)))
            else:
                log.warning("%s line %d: no audio %s; skipping this utterance", trans, n, audio)
    with ThreadPoolExecutor(HEADER_READ_THREADS) as pool:
        durations = list(pool.map(audio_duration, [audio for _, audio, _ in rows]))
    by_subset: dict[str, list[Utterance]] = {}
    for (subset, audio, text), duration in sorted(zip(rows, durations)):
        by_subset.setdefault(subset, []).append(Utterance(Path(os.path.abspath(audio)), duration, text))
    manifests = {}
    for subset, utterances in by_subset.items():
        manifests[subset] = out_dir / f"{subset}.jsonl"
        write_manifest(manifests[subset], utterances)
    return manifests
