"""Checks on the paths a user names, before anything heavy is loaded.

Imports no torch or numpy, so the CLI can refuse a missing or unusable file at once.
"""

import os

from asr.core.errors import AsrError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")  # what soundfile reads and writes


class AudioError(AsrError):
    """An audio file that is missing, empty, corrupt or not audio at all."""

    def __init__(self, path, cause: str):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


def check_audio_file(path) -> None:
    """Raise AudioError unless `path` names an existing, non-empty file that this user may read, and, if it is
    named .mp3, one that starts as an MP3 does."""
    if not os.path.exists(path):
        if os.path.islink(path):
            raise AudioError(str(path), f"a symbolic link to {os.readlink(path)}, which does not exist")
        raise AudioError(str(path), "no such file (check the path)")
    if os.path.isdir(path):
        raise AudioError(str(path), "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(str(path), "is an empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(str(path), "permission denied: this user may not read the file (check its permissions)")
    if str(path).lower().endswith(".mp3") and not _starts_as_mp3(path):
        raise AudioError(str(path), "not a readable audio file (named .mp3, but it starts with neither an ID3 tag "
                                    "nor an MPEG audio frame); if it is damaged, re-export or remove it")


def _starts_as_mp3(path) -> bool:
    """An ID3v2 tag or an MPEG audio frame's sync bits at the start. libsndfile hands a file named .mp3 to
    mpg123 whatever it holds, and mpg123 prints notes to stderr while it searches other bytes for a frame."""
    with open(path, "rb") as f:
        head = f.read(3)
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
