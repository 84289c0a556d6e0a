"""`asr check-manifest`: every problem of a manifest at once, before a training run meets them one by one.

Each non-blank line is checked for its format (JSON object, keys, types, UTF-8), its audio (present and
readable: the header, or with `decode` every sample), its duration (the manifest's against the audio's) and
its transcript (encodable by the tokenizer, and short enough for CTC to align with the model's output steps).
A transcript that normalisation strips of more than punctuation ("50 %", "A @ B", "你好") gets a warning.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from asr.core.audio import HEADER_READ_THREADS, SAMPLE_RATE, AudioError, audio_duration, load_audio
from asr.core.ctc import ctc_problems
from asr.core.manifest import DURATION_TOLERANCE, ManifestError, Utterance, manifest_rows
from asr.core.model_config import ModelConfig
from asr.core.text import dropped_characters

KINDS = ("format", "audio", "duration", "text")
WARNING = "warning"  # a line that can be trained on, but maybe not as meant; it fails no check


@dataclass
class Problem:
    where: str  # "path line N"
    kind: str  # one of KINDS
    message: str


def check_manifest(path, tokenizer, model: ModelConfig, speed: float = 1.0, decode: bool = False
                   ) -> tuple[int, list[Problem]]:
    """(lines read, the problems of every line in line order, warnings among them) of a manifest, for training
    `model` with `tokenizer`, its audio played at up to `speed` (speed perturbation). Raises ManifestError if the
    file cannot be read."""
    rows = list(manifest_rows(path))
    found = {where: [Problem(where, "format", str(row).removeprefix(f"{where}: "))]
             for where, row in rows if isinstance(row, ManifestError)}
    good = [(where, row) for where, row in rows if isinstance(row, Utterance)]
    utterances = [u for _, u in good]
    with ThreadPoolExecutor(HEADER_READ_THREADS) as pool:
        durations = pool.map(lambda u: measured_duration(u.audio_filepath, decode), utterances)
        for (where, u), duration, text in zip(good, durations, ctc_problems(utterances, tokenizer, model, speed)):
            warning = None if text else dropped_text(u.text)
            found[where] = [Problem(where, kind, message)
                            for kind, message in [*audio_problems(u, duration), ("text", text), (WARNING, warning)]
                            if message]
    return len(rows), [p for where, _ in rows for p in found[where]]


def measured_duration(path, decode: bool) -> float | AudioError:
    """Seconds of audio in `path`, from its header or by decoding it all; the AudioError if it is unusable."""
    try:
        return len(load_audio(path)) / SAMPLE_RATE if decode else audio_duration(path)
    except AudioError as err:
        return err


def dropped_text(text: str) -> str | None:
    """The warning for a transcript that normalisation strips of more than punctuation, or None."""
    if dropped := dropped_characters(text):
        return (f"normalisation drops {dropped} from the transcript: the tokenizer has no symbols for them, so the "
                "text lacks words the audio says; spell them out (e.g. '@' as AT) or remove the line")
    return None


def audio_problems(u: Utterance, duration: float | AudioError) -> list[tuple[str, str]]:
    """[(kind, message)] for an utterance whose audio was measured as `duration`."""
    if isinstance(duration, AudioError):
        return [("audio", str(duration))]
    if abs(duration - u.duration) > DURATION_TOLERANCE:
        return [("duration", f"'duration' is {u.duration:g} s but the audio lasts {duration:.3f} s")]
    return []


def summary(path, lines: int, problems: list[Problem]) -> str:
    """One line: how many lines have problems, of which kinds, and how many warnings."""
    bad = len({p.where for p in problems if p.kind != WARNING})
    counts = ", ".join(f"{n} {kind}" for kind in KINDS if (n := sum(p.kind == kind for p in problems)))
    warnings = sum(p.kind == WARNING for p in problems)
    return (f"{path}: {lines} lines, {bad} with problems" + (f" ({counts})" if counts else "")
            + (f", {warnings} with warnings" if warnings else ""))


def report_lines(path, lines: int, problems: list[Problem], fmt: str) -> list[str]:
    """The report of one manifest as text lines, or as JSON lines: each problem, then a summary object."""
    if fmt == "json":
        totals = {kind: sum(p.kind == kind for p in problems) for kind in KINDS}
        rows = [json.dumps(asdict(p)) for p in problems]
        return rows + [json.dumps({"manifest": str(path), "lines": lines,
                                   "bad_lines": len({p.where for p in problems if p.kind != WARNING}),
                                   "problems": totals, "warnings": sum(p.kind == WARNING for p in problems)})]
    return [f"{p.where}: {p.kind}: {p.message}" for p in problems] + [summary(path, lines, problems)]
