"""Transcripts as text: plain, JSON, SubRip (.srt), WebVTT (.vtt) and tab-separated cues (.tsv).

Subtitle formats group the timed words into cues: a cue ends at a pause of at least PAUSE_SECONDS,
after MAX_CUE_WORDS words, or once it spans MAX_CUE_SECONDS.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from asr.core.decoding import Word

EXTENSIONS = {"text": "txt", "json": "json", "srt": "srt", "vtt": "vtt", "tsv": "tsv"}
SUBTITLES = ("srt", "vtt", "tsv")  # one document per file: several cannot share stdout
PAUSE_SECONDS = 0.6
MAX_CUE_WORDS = 12
MAX_CUE_SECONDS = 5.0
PATH_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class Cue:
    start: float  # seconds
    end: float
    text: str


def cues(words: list[Word]) -> list[Cue]:
    """Consecutive words grouped into subtitle cues."""
    groups: list[list[Word]] = []
    for word in words:
        group = groups[-1] if groups else None
        if (group is None or word.start - group[-1].end >= PAUSE_SECONDS or len(group) >= MAX_CUE_WORDS
                or word.end - group[0].start > MAX_CUE_SECONDS):
            groups.append([word])
        else:
            group.append(word)
    return [Cue(g[0].start, g[-1].end, " ".join(w.word for w in g)) for g in groups]


def timestamp(seconds: float, decimal: str) -> str:
    """3723.5 -> "01:02:03,500" (SubRip, decimal ",") or "01:02:03.500" (WebVTT, decimal ".")."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{decimal}{ms % 1000:03d}"


def srt(words: list[Word]) -> str:
    return "".join(f"{i}\n{timestamp(c.start, ',')} --> {timestamp(c.end, ',')}\n{c.text}\n\n"
                   for i, c in enumerate(cues(words), start=1))


def vtt(words: list[Word]) -> str:
    return "WEBVTT\n\n" + "".join(f"{timestamp(c.start, '.')} --> {timestamp(c.end, '.')}\n{c.text}\n\n"
                                  for c in cues(words))


def tsv(words: list[Word]) -> str:
    """start and end in integer milliseconds, as whisper writes them."""
    return "start\tend\ttext\n" + "".join(f"{round(c.start * 1000)}\t{round(c.end * 1000)}\t{c.text}\n"
                                          for c in cues(words))


def tab_line(transcript) -> str:
    """"PATH<TAB>TEXT" with a newline, one line per file: a backslash, tab, newline or carriage return in the path
    is written as \\\\, \\t, \\n or \\r."""
    path = transcript.audio_filepath.translate(PATH_ESCAPES)
    return f"{path}\t{transcript.text}\n"


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a file of this process's own beside `path`, then rename it over `path`: a reader, or another
    run, finds the old file or the new one, never an empty or half-written one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def render(transcript, fmt: str) -> str:
    """A Transcript (asr.inference.transcribe) in format `fmt`, one of TRANSCRIPT_FORMATS; ends with a newline."""
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "json":
        return json.dumps(asdict(transcript)) + "\n"
    return {"srt": srt, "vtt": vtt, "tsv": tsv}[fmt](transcript.words)
