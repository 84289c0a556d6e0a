"""The audio files that the inputs of `asr transcribe` name: files, folders, glob patterns, manifests and stdin.

Imports no torch or numpy, so the CLI can find and check them before a model loads.
"""

import glob
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from asr.core.manifest import read_manifest
from asr.core.paths import audio_in


def is_pattern(item) -> bool:
    """A glob pattern ("calls/**/*.wav") that asr expands: magic characters, and no file of that very name."""
    return glob.has_magic(str(item)) and not os.path.exists(item)


def names_many(inputs: list) -> bool:
    """Whether inputs name several files, as far as output goes: anything but one file named alone (or -); a
    folder, a glob pattern or a manifest is many, whatever it holds."""
    if len(inputs) != 1:
        return True
    item = str(inputs[0])
    return item != "-" and (os.path.isdir(item) or is_pattern(item) or item.endswith(".jsonl"))


def find_audio(inputs: Iterable[str | os.PathLike]) -> Iterator[Path | BinaryIO]:
    """The audio the inputs name, in order: files; audio files (by extension) in folders, recursively, and
    files matching glob patterns ("calls/**/*.wav"), each sorted; the files of a manifest (.jsonl); "-": the
    audio on standard input. A folder or a pattern naming no file is passed on, for check_audio_file to report."""
    for item in inputs:
        path = Path(item)
        if str(item) == "-":
            yield sys.stdin.buffer  # spooled to a temporary file by numbered_chunks, then read as files are
        elif path.is_dir():  # by name, not kind: a broken link or a folder named *.wav is reported as alone
            yield from audio_in(path) or [path]
        elif is_pattern(item):
            yield from sorted(Path(p) for p in glob.glob(str(item), recursive=True) if os.path.isfile(p)) or [path]
        elif path.suffix == ".jsonl":
            yield from (u.audio_filepath for u in read_manifest(path))
        else:
            yield path
