"""Manifests: JSON lines in NeMo's convention, one utterance a line:
    {"audio_filepath": "train/1-2-0003.flac", "duration": 4.2, "text": "HELLO WORLD"}
relative paths are resolved against the manifest's folder and other keys are kept.
"""

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.core.errors import AsrError
from asr.core.paths import AUDIO_EXTENSIONS

MANIFEST_KEYS = {"audio_filepath": (str,), "duration": (int, float), "text": (str,)}  # key -> JSON types
DURATION_TOLERANCE = 0.1  # seconds a row's duration may differ from its audio's (check-manifest, asr train)
AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS", b"ID3")  # how WAV, FLAC, Ogg (Vorbis, Opus) and tagged MP3 files start


class ManifestError(AsrError, ValueError):
    """A manifest line that is not a JSON object with audio_filepath, duration and text."""


@dataclass(frozen=True)
class Utterance:
    audio_filepath: Path  # absolute
    duration: float  # seconds
    text: str
    extra: dict = field(default_factory=dict)  # any other manifest keys, written back unchanged


def _parse_line(line: bytes, where: str, folder: Path) -> Utterance:
    """One manifest line -> Utterance; `where` ("path line N") prefixes every error."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{where}: not UTF-8 text (byte 0x{line[err.start]:02x} at column {err.start + 1}); "
                            "save the manifest as UTF-8") from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: expected a JSON object with keys {', '.join(MANIFEST_KEYS)}")
    for key, types in MANIFEST_KEYS.items():
        if key not in row:
            raise ManifestError(f"{where}: missing key {key!r}; every line needs {', '.join(MANIFEST_KEYS)}")
        if not isinstance(row[key], types) or isinstance(row[key], bool):
            kind = "a number of seconds" if key == "duration" else "a string"
            raise ManifestError(f"{where}: {key!r} must be {kind}, got {row[key]!r}")
    if not 0 <= row["duration"] < math.inf:
        raise ManifestError(f"{where}: 'duration' must be a non-negative number of seconds, got {row['duration']!r}")
    extra = {k: v for k, v in row.items() if k not in MANIFEST_KEYS}
    audio = Path(os.path.abspath(folder / row["audio_filepath"]))
    return Utterance(audio, float(row["duration"]), row["text"], extra)


def manifest_rows(path: str | os.PathLike) -> Iterator[tuple[str, Utterance | ManifestError]]:
    """("path line N", its Utterance, or the ManifestError saying what is wrong with it) for every non-blank
    line of a JSON-lines manifest, in file order. Raises ManifestError if the file cannot be read."""
    path = Path(path)
    folder = path.absolute().parent
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest (check the path)") from None
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err.strerror})") from None
    if path.suffix.lower() in AUDIO_EXTENSIONS or lines[:1] and lines[0].startswith(AUDIO_MAGIC):
        raise ManifestError(f"{path}: an audio file, not a manifest; this command takes JSON-lines manifests, one "
                            '{"audio_filepath": ..., "duration": ..., "text": ...} a line (asr transcribe takes audio)')
    for n, line in enumerate(lines, 1):
        if line.strip():
            where = f"{path} line {n}"
            try:
                yield where, _parse_line(line, where, folder)
            except ManifestError as err:
                yield where, err


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """The utterances of a JSON-lines manifest, in file order; blank lines are skipped.

    Raises ManifestError naming the file and line for a line that is not a valid manifest row.
    """
    utterances = []
    for _, row in manifest_rows(path):
        if isinstance(row, ManifestError):
            raise row
        utterances.append(row)
    return utterances


def nothing_to_score(path, utterances: int, cause: str) -> ManifestError:
    """The error for a manifest none of whose `utterances` could be scored, for `cause`."""
    return ManifestError(f"{path}: none of its {utterances} utterances could be scored ({cause}), nothing to score")


def write_manifest(path: str | os.PathLike, utterances: Sequence[Utterance]) -> None:
    """Write utterances as JSON lines; audio under the manifest's folder is written relative to it."""
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for u in utterances:
            audio = Path(os.path.abspath(u.audio_filepath))
            shown = audio.relative_to(folder).as_posix() if audio.is_relative_to(folder) else str(audio)
            row = {"audio_filepath": shown, "duration": u.duration, "text": u.text, **u.extra}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
