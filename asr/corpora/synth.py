"""Synthetic speech corpora in LibriSpeech's layout, made with offline text-to-speech engines.

    asr synth TEXT_FILE... --out DIR --hours H [--voices ...] [--seed S] [--jobs N]

writes, for the splits train, dev and test,

    OUT/<split>/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac     16 kHz mono FLAC
    OUT/<split>/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt    "SPEAKER-CHAPTER-NNNN TEXT" lines
    OUT/<split>.jsonl                                       audio_filepath (relative to OUT), duration,
                                                            text, speaker, voice
    OUT/SPEAKERS.txt                                        speaker id, split, voice, pitch, rate

A voice is one engine voice (espeak-ng en-us+Alex, mbrola us1, flite kal, ...). A speaker is a voice with
fixed pitch and rate settings; a chapter is the text file the sentence came from. Each utterance adds a
little pitch and rate jitter, and a share of them goes through sox (tempo, band-limiting, reverb) and gets
noise at a random SNR. The splits share no speaker and no sentence. Every random choice is drawn from the
seed in the main process, so a seed gives the same corpus, byte for byte, with any number of jobs.

The voices reserved for independent evaluation (RESERVED_VOICES) are never in the inventory, and naming
one in --voices is an error.
"""

import fnmatch
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from asr.core.audio import SAMPLE_RATE, AudioError, load_audio, write_audio
from asr.core.augment import colored_noise
from asr.core.config import ConfigError
from asr.core.manifest import read_manifest
from asr.core.text import normalize

log = logging.getLogger("asr")

SPLITS = ("train", "dev", "test")

# Engines: executables each one needs, its share of the utterances (renormalised over the engines
# available), and how many speakers (pitch/rate settings) each of its voices gives. A held-out engine is
# never in a corpus unless --voices names it: it makes the unseen-engine sets that models are scored on.
ENGINES = {
    "espeak-ng": dict(programs=("espeak-ng",), share=0.35, speakers_per_voice=1),
    "mbrola": dict(programs=("espeak-ng", "mbrola"), share=0.35, speakers_per_voice=8),
    "flite": dict(programs=("flite", "sox"), share=0.1, speakers_per_voice=8),
    "festival": dict(programs=("festival", "sox"), share=0.1, speakers_per_voice=8),
    "pico": dict(programs=("pico2wave",), share=0.1, speakers_per_voice=8),
    "rhvoice": dict(programs=("RHVoice-test", "sox"), share=0.1, speakers_per_voice=4, held_out=True),
}
ESPEAK_ACCENTS = ("en-us", "en-us-nyc", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-gb-x-rp", "en-029")  # each also with every espeak-ng variant (+Alex, +klatt, ...)
MBROLA_ENGLISH = ("us1", "us3", "en1")  # spoken through espeak-ng as mb-us1, ...
MBROLA_ACCENTED = ("af1", "de1", "de2", "de3", "de4", "de5", "de6", "fr1", "fr4", "gr2", "hu1", "nl2",
                   "pl1", "ro1", "sw1", "sw2")  # English with an accent, through espeak-ng as mb-de1-en, ...
MBROLA_DIR = Path("/usr/share/mbrola")
FLITE_VOICES = ("kal", "kal16", "awb")
FESTIVAL_VOICES = ("kal_diphone", "rab_diphone", "don_diphone")
FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices/english")
PICO_VOICES = ("en-GB",)
RHVOICE_DIR = Path("/usr/share/RHVoice/voices")
RHVOICE_ENGLISH = ("alan", "bdl", "clb", "evgeniy-eng", "lyubov")  # HTS voices; Scottish, US, Russian-accented

# Kept out of every corpus: these voices belong to independent evaluation (see DESIGN.md).
RESERVED_VOICES = frozenset({
    "pico:en-US", "flite:slt", "flite:rms", "festival:cmu_us_slt_arctic_hts", "mbrola:us2", "espeak-ng:mb-us2",
    "festival:us2_mbrola", "festival:ked_diphone", "festival:kdlpc16k", "rhvoice:slt",
})

SPEAKER_PITCH = (-4.0, 4.0)  # semitones around the voice's own pitch, fixed per speaker
SPEAKER_RATE = (0.8, 1.15)  # speaking-rate factor, fixed per speaker
JITTER_PITCH = 0.7  # +- semitones per utterance
JITTER_RATE = 0.07  # +- relative rate per utterance
ESPEAK_PITCH_PER_SEMITONE = 6  # espeak-ng -p is 0..99 around 50
ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's default -s

TEMPO = (0.9, 1.1)  # sox tempo factor of an augmented utterance
BAND_LOW_HZ, BAND_HIGH_HZ = (50, 300), (3000, 7000)  # sox sinc band-pass edges
REVERBERANCE = (10, 70)  # sox reverb, percent
SNR_DB = (5.0, 30.0)  # additive noise: white, pink or brown
EFFECT_PROBABILITY = 0.5  # chance of band-limiting, reverb and noise on an augmented utterance
PEAK = 0.99  # scale down louder results instead of clipping

MIN_WORDS, MAX_WORDS = 3, 40  # sentences kept for synthesis
SECONDS_PER_WORD, SECONDS_PER_UTTERANCE = 0.36, 0.4  # first duration estimate at rate 1
MAX_ROUNDS = 4  # render, measure, and top up the splits still short of their hours
MIN_SECONDS = 0.2  # shorter output means the engine failed
ENGINE_TIMEOUT_S = 60


class SynthError(Exception):
    """An engine that failed to speak one sentence."""


@dataclass(frozen=True, order=True)
class Voice:
    engine: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Speaker:
    id: int
    voice: Voice
    pitch: float  # semitones
    rate: float  # factor


@dataclass(frozen=True)
class Job:
    """Everything needed to render one utterance; drawn in the main process, rendered in a worker."""

    split: str
    speaker: Speaker
    utt_id: str  # SPEAKER-CHAPTER-NNNN
    path: str  # absolute .flac path
    text: str  # normalised
    pitch: float  # semitones, speaker + jitter
    rate: float  # factor, speaker x jitter
    effects: tuple[str, ...]  # sox augmentation effects
    snr_db: float | None  # additive noise, or None
    noise_exponent: int  # 0 white, 1 pink, 2 brown
    noise_seed: int
    estimate: float  # expected duration in seconds


# ---------------------------------------------------------------- voices and speakers


def _espeak_variants() -> list[str]:
    """Names of the installed espeak-ng voice variants (Alex, klatt, f3, ...)."""
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True)
    files = [line.split()[4] for line in listing.stdout.splitlines()[1:] if len(line.split()) > 4]
    return sorted({f.split("/", 1)[1] for f in files if f.startswith("!v/")})


def _flite_voices() -> list[str]:
    """FLITE_VOICES that this flite binary has built in."""
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return [v for v in FLITE_VOICES if v in listing.split()]


def _engine_voices(engine: str) -> list[Voice]:
    """The training voices of an installed engine."""
    if engine == "espeak-ng":
        names = [f"{a}+{v}" for a in ESPEAK_ACCENTS for v in [""] + _espeak_variants()]
        names = [n.rstrip("+") for n in names]
    elif engine == "mbrola":
        names = [v for v in MBROLA_ENGLISH + MBROLA_ACCENTED if (MBROLA_DIR / v / v).exists()]
    elif engine == "flite":
        names = _flite_voices()
    elif engine == "festival":
        names = [v for v in FESTIVAL_VOICES if (FESTIVAL_VOICE_DIR / v).is_dir()]
    elif engine == "rhvoice":
        names = [v for v in RHVOICE_ENGLISH if (RHVOICE_DIR / v).is_dir()]
    else:
        names = list(PICO_VOICES)
    return [Voice(engine, n) for n in names if f"{engine}:{n}" not in RESERVED_VOICES]


def available_voices() -> list[Voice]:
    """Every training voice of the engines installed here; warns about missing engines."""
    voices = []
    for engine, spec in ENGINES.items():
        missing = [p for p in spec["programs"] if not shutil.which(p)]
        if missing and not spec.get("held_out"):
            log.warning("synth: skipping %s: %s not installed (run scripts/install_tts.sh)", engine, ", ".join(missing))
        elif not missing:
            voices += _engine_voices(engine)
    return voices


def check_not_reserved(pattern: str) -> None:
    """ConfigError if `pattern` names a voice reserved for evaluation (by full id or bare name)."""
    for reserved in RESERVED_VOICES:
        if pattern.lower() in (reserved.lower(), reserved.split(":", 1)[1].lower()):
            raise ConfigError(
                f"--voices {pattern}: {reserved} is reserved for independent evaluation and is never used "
                "for training (see DESIGN.md); pick a training voice, written as ENGINE:VOICE"
            )


def select_voices(patterns: list[str] | None = None) -> list[Voice]:
    """The available voices matching any of `patterns`: engine names, ENGINE:VOICE ids or globs of them."""
    voices = available_voices()
    if not patterns:
        selected = [v for v in voices if not ENGINES[v.engine].get("held_out")]
    else:
        for pattern in patterns:
            check_not_reserved(pattern)
        selected = [v for v in voices if any(p == v.engine or fnmatch.fnmatch(v.id, p) for p in patterns)]
    if not selected:
        raise ConfigError(
            f"no voice to synthesize with (asked for {patterns or 'all'}, installed: "
            f"{sorted({v.engine for v in voices}) or 'none'}); run scripts/install_tts.sh"
        )
    return selected


def make_speakers(voices: list[Voice]) -> list[Speaker]:
    """Speakers of `voices`: each voice with fixed pitch/rate settings, independent of the corpus seed."""
    speakers = []
    for voice in sorted(voices):
        for k in range(ENGINES[voice.engine]["speakers_per_voice"]):
            rng = random.Random(f"{voice.id}/{k}")
            pitch, rate = rng.uniform(*SPEAKER_PITCH), rng.uniform(*SPEAKER_RATE)
            speakers.append(Speaker(len(speakers) + 1, voice, round(pitch, 2), round(rate, 3)))
    return speakers


def split_speakers(speakers: list[Speaker], shares: dict[str, float], rng: random.Random) -> dict[str, list[Speaker]]:
    """Deal each engine's speakers into the splits: dev and test get their share (at least one), train the rest."""
    by_split = {split: [] for split in SPLITS}
    for engine in ENGINES:
        pool = [s for s in speakers if s.voice.engine == engine]
        rng.shuffle(pool)
        for split in ("dev", "test"):
            n = max(1, round(shares[split] * len(pool))) if shares[split] > 0 and len(pool) >= 3 else 0
            by_split[split] += pool[:n]
            pool = pool[n:]
        by_split["train"] += pool
    return by_split


# ---------------------------------------------------------------- sentences


def read_sentences(text_files: list[str | os.PathLike], rng: random.Random,
                   exclude: frozenset[str] = frozenset()) -> Iterator[tuple[int, str]]:
    """(chapter, text) pairs: distinct normalised sentences of MIN_WORDS..MAX_WORDS words in random order,
    none of them in `exclude` (normalised texts of held-out sets).

    The chapter is the 1-based index of the text file. One sentence per line; lines are normalised
    lazily, so drawing a small corpus from a large text stays fast.
    """
    lines = {}
    for chapter, path in enumerate(text_files, start=1):
        try:
            content = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise FileNotFoundError(f"{path}: cannot read the text file ({err.strerror})") from err
        for line in content.splitlines():
            lines.setdefault(line.strip(), chapter)
    order = list(lines.items())
    rng.shuffle(order)
    return _usable(order, exclude)


def _usable(lines: list[tuple[str, int]], exclude: frozenset[str]) -> Iterator[tuple[int, str]]:
    """Normalise (line, chapter) pairs; yield (chapter, text) for new texts of a usable length."""
    seen = set(exclude)
    for line, chapter in lines:
        text = normalize(line)
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS and text not in seen:
            seen.add(text)
            yield chapter, text


# ---------------------------------------------------------------- planning


def _augmentation(rng: random.Random) -> tuple[tuple[str, ...], float | None, int]:
    """Random sox effects (tempo, band-limiting, reverb), noise SNR (or None) and noise colour."""
    effects = ["tempo", "-s", f"{rng.uniform(*TEMPO):.3f}"]
    if rng.random() < EFFECT_PROBABILITY:
        effects += ["reverb", f"{rng.uniform(*REVERBERANCE):.0f}"]
    if rng.random() < EFFECT_PROBABILITY:
        effects += ["sinc", f"{rng.uniform(*BAND_LOW_HZ):.0f}-{rng.uniform(*BAND_HIGH_HZ):.0f}"]
    snr = round(rng.uniform(*SNR_DB), 1) if rng.random() < EFFECT_PROBABILITY else None
    return tuple(effects), snr, rng.randrange(3)


class Planner:
    """Draws utterances (sentence, speaker, jitter, augmentation) until a split's seconds are planned."""

    def __init__(self, sentences: Iterator[tuple[int, str]], by_split: dict[str, list[Speaker]], out_dir: Path,
                 augment_share: float, rng: random.Random):
        self.sentences, self.out_dir = sentences, out_dir
        self.augment_share, self.rng = augment_share, rng
        self.by_engine = {split: {e: [s for s in speakers if s.voice.engine == e] for e in ENGINES}
                          for split, speakers in by_split.items()}
        self.seconds_per_word = SECONDS_PER_WORD
        self.numbers = Counter()  # (speaker, chapter) -> utterances so far

    def plan(self, split: str, seconds: float) -> list[Job]:
        """Jobs for `split` whose estimated durations add up to at least `seconds` (fewer if text runs out)."""
        jobs, planned = [], 0.0
        while planned < seconds:
            drawn = next(self.sentences, None)
            if drawn is None:
                log.warning("synth: the text ran out of unused sentences; %s is %.0f s short", split, seconds - planned)
                break
            jobs.append(self._job(split, *drawn))
            planned += jobs[-1].estimate
        return jobs

    def calibrate(self, estimated: float, measured: float) -> None:
        """Scale later estimates by how long the rendered speech really was."""
        if estimated > 0 and measured > 0:
            self.seconds_per_word *= measured / estimated

    def _speaker(self, split: str) -> Speaker:
        """An engine by its share, then one of its speakers in `split`."""
        engines = [e for e, speakers in self.by_engine[split].items() if speakers]
        engine = self.rng.choices(engines, weights=[ENGINES[e]["share"] for e in engines])[0]
        return self.rng.choice(self.by_engine[split][engine])

    def _job(self, split: str, chapter: int, text: str) -> Job:
        speaker = self._speaker(split)
        number = self.numbers[speaker.id, chapter]
        self.numbers[speaker.id, chapter] += 1
        utt_id = f"{speaker.id}-{chapter}-{number:04d}"
        pitch = speaker.pitch + self.rng.uniform(-JITTER_PITCH, JITTER_PITCH)
        rate = speaker.rate * (1 + self.rng.uniform(-JITTER_RATE, JITTER_RATE))
        augment = self.rng.random() < self.augment_share
        effects, snr, exponent = _augmentation(self.rng) if augment else ((), None, 0)
        path = self.out_dir / split / str(speaker.id) / str(chapter) / f"{utt_id}.flac"
        estimate = len(text.split()) * self.seconds_per_word / rate + SECONDS_PER_UTTERANCE
        return Job(split, speaker, utt_id, str(path), text, round(pitch, 2), round(rate, 3), effects, snr,
                   exponent, self.rng.getrandbits(32), estimate)


# ---------------------------------------------------------------- engines


def _run(argv: list[str]) -> None:
    """Run an engine or sox; SynthError with its stderr if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
    if result.returncode != 0:
        raise SynthError(f"{argv[0]} exited {result.returncode}: {result.stderr.strip()[-300:]}")


def pitch_effect(semitones: float) -> list[str]:
    """sox effects shifting the pitch, for engines without a pitch control of their own.

    sox's pitch changes the sample rate and leaves the resampling back to the end of the chain, so the effects
    after it would run at 16 kHz x 2^(semitones/12): `rate` puts them back at 16 kHz (a band-pass edge of 7 kHz
    fails at 12.7 kHz).
    """
    return ["pitch", f"{100 * semitones:.0f}", "rate", str(SAMPLE_RATE)]


def _espeak(voice: Voice, text: str, pitch: float, rate: float, wav: Path) -> list[str]:
    """espeak-ng, or an mbrola voice through espeak-ng; native pitch and rate."""
    if voice.engine == "mbrola":
        name = f"mb-{voice.name}" if voice.name in MBROLA_ENGLISH else f"mb-{voice.name}-en"
    else:
        name = voice.name
    p = min(99, max(0, round(50 + ESPEAK_PITCH_PER_SEMITONE * pitch)))
    speed = round(ESPEAK_WORDS_PER_MINUTE * rate)
    _run(["espeak-ng", "-v", name, "-p", str(p), "-s", str(speed), "-w", str(wav), text])
    return []


def _flite(voice: Voice, text: str, pitch: float, rate: float, wav: Path) -> list[str]:
    """flite: native rate, pitch by sox."""
    _run(["flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / rate:.3f}", "-t", text, "-o", str(wav)])
    return pitch_effect(pitch)


def _pico(voice: Voice, text: str, pitch: float, rate: float, wav: Path) -> list[str]:
    """pico2wave: native pitch and rate through its markup."""
    markup = f"<speed level='{100 * rate:.0f}'><pitch level='{100 * 2 ** (pitch / 12):.0f}'>{text}</pitch></speed>"
    _run(["pico2wave", "-l", voice.name, "-w", str(wav), markup])
    return []


def _rhvoice(voice: Voice, text: str, pitch: float, rate: float, wav: Path) -> list[str]:
    """RHVoice (HTS) at 16 kHz; rate and pitch by sox."""
    script = wav.with_suffix(".txt")
    script.write_text(text)
    _run(["RHVoice-test", "-p", voice.name, "-R", str(SAMPLE_RATE), "-i", str(script), "-o", str(wav)])
    return ["tempo", "-s", f"{rate:.3f}", *pitch_effect(pitch)]


class Festival:
    """One long-lived `festival --pipe`: starting festival takes ~0.2 s, an utterance then ~10 ms."""

    MARKER = "asr-synth-done"

    def __init__(self):
        self.process = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)

    def say(self, voice: str, text: str, rate: float, wav: Path) -> None:
        """Write `text` spoken by festival voice `voice` to `wav`; an error leaves no file."""
        utterance = f"(utt.save.wave (utt.synth (Utterance Text \"{text}\")) \"{wav}\" 'riff)"
        stretch = f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})"
        self.process.stdin.write(f"(begin (voice_{voice}) {stretch} {utterance})\n"
                                 f"(format t \"{self.MARKER}\\n\")\n(fflush nil)\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.strip() == self.MARKER:
                return
        raise SynthError(f"festival exited {self.process.wait()}")


_festival: Festival | None = None  # one per worker process


def _festival_say(voice: Voice, text: str, pitch: float, rate: float, wav: Path) -> list[str]:
    """festival through this worker's Festival: native rate, pitch by sox."""
    global _festival
    if _festival is None or _festival.process.poll() is not None:
        _festival = Festival()
    _festival.say(voice.name, text, rate, wav)
    return pitch_effect(pitch)


SYNTHESIZERS = {"espeak-ng": _espeak, "mbrola": _espeak, "flite": _flite, "festival": _festival_say, "pico": _pico,
               "rhvoice": _rhvoice}


# ---------------------------------------------------------------- rendering


def apply_effects(wav: Path, effects: list[str], out: Path) -> Path:
    """sox `effects` on `wav` at 16 kHz, mono, into `out`; SynthError if sox refuses them."""
    # resampled first: 8 and 10 kHz voices are too narrow for the band-pass edges
    _run(["sox", "-R", "-D", str(wav), "-e", "floating-point", "-b", "32", str(out),
          "rate", str(SAMPLE_RATE), *effects, "channels", "1"])
    return out


def _speak(job: Job, tmp: Path) -> np.ndarray:
    """Engine -> wav -> sox (engine pitch + augmentation, at 16 kHz) -> 16 kHz mono float32 (S,)."""
    wav = tmp / "tts.wav"
    effects = SYNTHESIZERS[job.speaker.voice.engine](job.speaker.voice, job.text.lower(), job.pitch, job.rate, wav)
    effects += list(job.effects)
    if effects:
        wav = apply_effects(wav, effects, tmp / "sox.wav")
    if not wav.exists():
        raise SynthError("the engine wrote no audio")
    return load_audio(wav)


def render(job: Job) -> tuple[Job, float | None, str | None]:
    """Render one job to its FLAC; returns (job, duration in seconds, None) or (job, None, error)."""
    try:
        with tempfile.TemporaryDirectory(prefix="asr-synth-") as tmp:
            wave = _speak(job, Path(tmp))
    except (SynthError, AudioError, OSError, subprocess.SubprocessError) as err:
        return job, None, str(err)
    if len(wave) < MIN_SECONDS * SAMPLE_RATE:
        return job, None, f"the engine made only {len(wave) / SAMPLE_RATE:.2f} s of audio"
    if job.snr_db is not None:
        noise = colored_noise(len(wave), job.noise_exponent, np.random.default_rng(job.noise_seed))
        wave = wave + noise * math.sqrt(np.mean(wave ** 2) / 10 ** (job.snr_db / 10))
    peak = np.abs(wave).max()
    wave = (wave * (PEAK / peak) if peak > PEAK else wave).astype(np.float32)
    Path(job.path).parent.mkdir(parents=True, exist_ok=True)
    write_audio(job.path, wave)
    return job, len(wave) / SAMPLE_RATE, None


def _init_worker() -> None:
    """One thread per worker: the parallelism is over processes, and results match for any --jobs."""
    torch.set_num_threads(1)


def render_all(pool, jobs: list[Job], description: str) -> list[tuple[Job, float | None, str | None]]:
    """Render `jobs` in the worker pool, in order, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import track

    results = pool.imap(render, jobs, chunksize=4)
    return list(track(results, total=len(jobs), description=description, console=Console(stderr=True)))


# ---------------------------------------------------------------- writing


def _utt_key(utt_id: str) -> tuple[int, ...]:
    return tuple(map(int, utt_id.split("-")))


def write_split(out_dir: Path, split: str, done: list[tuple[Job, float]]) -> Path:
    """Write the split's .trans.txt files and OUT/<split>.jsonl; return the manifest path."""
    done = sorted(done, key=lambda jd: _utt_key(jd[0].utt_id))
    transcripts = defaultdict(list)
    for job, _ in done:
        speaker, chapter, _ = job.utt_id.split("-")
        transcripts[Path(job.path).parent / f"{speaker}-{chapter}.trans.txt"].append(f"{job.utt_id} {job.text}\n")
    for path, lines in transcripts.items():
        path.write_text("".join(lines))
    manifest = out_dir / f"{split}.jsonl"
    with manifest.open("w") as f:
        for job, duration in done:
            row = {"audio_filepath": os.path.relpath(job.path, out_dir), "duration": round(duration, 3),
                   "text": job.text, "speaker": str(job.speaker.id), "voice": job.speaker.voice.id}
            f.write(json.dumps(row) + "\n")
    return manifest


def write_speakers(out_dir: Path, by_split: dict[str, list[Speaker]], used: set[int]) -> None:
    """OUT/SPEAKERS.txt in the spirit of LibriSpeech's SPEAKERS.TXT, for the speakers that were used."""
    rows = sorted((s.id, split, s) for split, speakers in by_split.items() for s in speakers if s.id in used)
    lines = [f"{i:>5} | {split:<5} | {s.voice.id:<32} | {s.pitch:+.2f} | {s.rate:.3f}\n" for i, split, s in rows]
    (out_dir / "SPEAKERS.txt").write_text("; ID | SUBSET | VOICE | PITCH (semitones) | RATE\n" + "".join(lines))


def report_failures(out_dir: Path, failures: list[tuple[Job, str]]) -> None:
    """Warn about the utterances engines failed on and list them all in OUT/skipped.txt, one line each: voice,
    text and error separated by tabs (an engine's multi-line stderr joined onto one line)."""
    if not failures:
        return
    lines = [f"{job.speaker.voice.id}\t{job.text}\t{' '.join(error.split())}\n" for job, error in failures]
    (out_dir / "skipped.txt").write_text("".join(lines))
    log.warning("synth: skipped %d utterances the engines failed on (listed in %s); first: %s",
                len(failures), out_dir / "skipped.txt", lines[0].strip())


# ---------------------------------------------------------------- entry points


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to mix a new corpus into an old one."""
    old = [p.name for p in (*(out_dir / s for s in SPLITS), *(out_dir / f"{s}.jsonl" for s in SPLITS)) if p.exists()]
    if old:
        raise ConfigError(f"{out_dir} already holds a corpus ({', '.join(old)}); delete it or choose another --out")


def synthesize_corpus(
    text_files: list[str | os.PathLike], out_dir: str | os.PathLike, hours: float, *,
    voices: list[str] | None = None, seed: int = 0, jobs: int = 1,
    augment_share: float = 0.3, dev_share: float = 0.05, test_share: float = 0.05,
    exclude: list[str | os.PathLike] = (),
) -> dict[str, Path]:
    """Synthesize about `hours` of speech from the sentences of `text_files` into `out_dir`.

    voices: engine names, ENGINE:VOICE ids or globs (default: every training voice installed).
    exclude: manifests of held-out sets (real-speech dev sets, say): their sentences are never read.
    Returns {split: manifest path} for the splits train, dev and test.
    """
    if hours <= 0 or jobs < 1 or min(dev_share, test_share) < 0 or dev_share + test_share >= 1:
        raise ConfigError("need hours > 0, jobs >= 1, and dev_share, test_share >= 0 with dev_share + test_share < 1")
    if augment_share > 0 and not shutil.which("sox"):
        log.warning("synth: sox is not installed, so no utterance is augmented (run scripts/install_tts.sh)")
        augment_share = 0.0
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir)
    rng = random.Random(seed)
    speakers = make_speakers(select_voices(voices))
    by_split = split_speakers(speakers, {"dev": dev_share, "test": test_share}, rng)
    shares = {"train": 1 - dev_share - test_share, "dev": dev_share, "test": test_share}
    remaining = {split: hours * 3600 * shares[split] if by_split[split] else 0.0 for split in SPLITS}
    held_out = frozenset(normalize(u.text) for manifest in exclude for u in read_manifest(manifest))
    planner = Planner(read_sentences(text_files, rng, held_out), by_split, out_dir, augment_share, rng)
    done, failures = {split: [] for split in SPLITS}, []
    engines = Counter(s.voice.engine for s in speakers)
    log.info("synth: %d speakers: %s", len(speakers), ", ".join(f"{n} {e}" for e, n in engines.items()))
    with multiprocessing.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
        for round_ in range(1, MAX_ROUNDS + 1):
            todo = [job for split in SPLITS if remaining[split] > 0 for job in planner.plan(split, remaining[split])]
            if not todo:
                break
            results = render_all(pool, todo, f"synth, round {round_}")
            ok = [(job, duration) for job, duration, _ in results if duration is not None]
            failures += [(job, error) for job, _, error in results if error is not None]
            planner.calibrate(sum(job.estimate for job, _ in ok), sum(d for _, d in ok))
            for job, duration in ok:
                done[job.split].append((job, duration))
                remaining[job.split] -= duration
    out_dir.mkdir(parents=True, exist_ok=True)
    write_speakers(out_dir, by_split, {job.speaker.id for split in SPLITS for job, _ in done[split]})
    report_failures(out_dir, failures)
    hours_done = ", ".join(f"{split} {sum(d for _, d in done[split]) / 3600:.3f} h" for split in SPLITS)
    log.info("synth: wrote %s to %s", hours_done, out_dir)
    return {split: write_split(out_dir, split, done[split]) for split in SPLITS}

