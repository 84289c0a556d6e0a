"""Waveform augmentation that makes clean speech sound recorded, drawn per utterance from a seed.

Each effect is a switch with a probability (`AugmentConfig`); `Augmenter.__call__` applies them in the order
a recording would: speed (the talker), room reverberation, babble and coloured noise (the room), a telephone
channel (band-limit, 8 kHz round trip, mu-law codec), then gain and clipping (the recorder). Every random
choice comes from the generator passed in, so a seed fixes the result whatever process runs it. Only speed
changes the length; the other effects keep every sample count.

Room impulse responses come from pyroomacoustics' image-source simulation of shoebox rooms of random size,
reverberation time and source-microphone distance, made once per run (`room_impulse_responses`).
"""

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torchaudio.functional as AF

from asr.core.audio import SAMPLE_RATE
from asr.core.config import ConfigError

log = logging.getLogger(__name__)

TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MAX_IMAGE_ORDER = 17  # image-source reflections simulated; the tail beyond decays below -60 dB in most rooms
ROOM_SIDES_M = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))  # length, width, height ranges
MIC_DISTANCE_M = (0.3, 3.0)
# The shortest reverberation time allowed. Sabine's 24 ln(10) V / (c S) with total absorption is a room's
# shortest: 0.0744 s for the smallest drawn (3 x 3 x 2.4 m, c = 343 m/s), longer for larger ones. At 0.1 s about
# one drawn room in eight can have it (none at 0.075 s in practice), so the simulation's redraws stay few.
MIN_RT60_S = 0.1


@dataclass
class AugmentConfig:
    """Probabilities (0 = off) and ranges of the training-time waveform effects."""

    reverb: float = 0.0  # probability of a simulated room
    rt60: list[float] = field(default_factory=lambda: [0.15, 0.9])  # seconds, reverberation time range
    rooms: int = 48  # impulse responses simulated per run, drawn from per utterance
    noise: float = 0.0  # probability of white, pink or brown noise
    babble: float = 0.0  # probability of other utterances mixed underneath
    babble_talkers: list[int] = field(default_factory=lambda: [3, 6])
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])  # of noise and babble
    telephone: float = 0.0  # probability of a 300-3400 Hz, 8 kHz, mu-law channel
    gain: float = 0.0  # probability of a level change
    gain_db: list[float] = field(default_factory=lambda: [-20.0, 10.0])
    clip: float = 0.0  # probability of clipping at a random share of the peak
    clip_level: list[float] = field(default_factory=lambda: [0.3, 0.9])

    def __post_init__(self):
        for name in ("reverb", "noise", "babble", "telephone", "gain", "clip"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"data.augment.{name} is a probability: it must be in [0, 1], "
                                  f"got {getattr(self, name)}")
        for name in ("rt60", "babble_talkers", "snr_db", "gain_db", "clip_level"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(f"data.augment.{name}: a [low, high] range, two values with low <= high, "
                                  f"got {value}")
        if self.babble_talkers[0] < 1:
            raise ConfigError(f"data.augment.babble_talkers: at least one talker, got {self.babble_talkers}")
        if self.reverb and self.rooms < 1:
            raise ConfigError(f"data.augment.rooms: reverb needs rooms >= 1, got {self.rooms}")
        if self.rt60[0] < MIN_RT60_S:  # few or no drawn rooms have shorter: the simulation would redraw for ever
            raise ConfigError(f"data.augment.rt60 must start at {MIN_RT60_S} s or more (few simulated rooms "
                              f"reverberate for less), got {self.rt60}")

    @property
    def enabled(self) -> bool:
        return any((self.reverb, self.noise, self.babble, self.telephone, self.gain, self.clip))


def colored_noise(n: int, exponent: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise (n,) with a 1/f^exponent power spectrum: 0 white, 1 pink, 2 brown."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 2 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return noise / (noise.std() + 1e-12)


def room_impulse_responses(count: int, rt60: Sequence[float], seed: int) -> list[torch.Tensor]:
    """`count` simulated room impulse responses (K,) float32, unit energy, direct path at sample 0."""
    import pyroomacoustics as pra  # only runs that reverberate pay for its import

    rng = np.random.default_rng(seed)
    responses = []
    while len(responses) < count:
        room = np.array([rng.uniform(*side) for side in ROOM_SIDES_M])
        try:
            absorption, order = pra.inverse_sabine(rng.uniform(*rt60), room)
        except ValueError:  # a reverberation time this room cannot have (too large for it): draw again
            continue
        shoebox = pra.ShoeBox(room, fs=SAMPLE_RATE, materials=pra.Material(absorption),
                              max_order=min(order, MAX_IMAGE_ORDER))
        mic = rng.uniform([0.5, 0.5, 0.8], room - [0.5, 0.5, 0.8])
        direction = rng.normal(size=3)
        source = mic + direction / np.linalg.norm(direction) * rng.uniform(*MIC_DISTANCE_M)
        if np.any(source < 0.1) or np.any(source > room - 0.1):
            continue
        shoebox.add_source(source)
        shoebox.add_microphone(mic)
        shoebox.compute_rir()
        rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
        rir = rir[int(np.argmax(np.abs(rir))):]  # the direct path first: no delay added to the speech
        responses.append(torch.from_numpy(rir / np.sqrt(np.sum(rir ** 2))).float())
    return responses


def at_snr(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """wave (S,) plus noise (S,) scaled to `snr_db` below the wave's power."""
    power = wave.pow(2).mean().clamp(min=1e-10)
    scale = torch.sqrt(power / (noise.pow(2).mean().clamp(min=1e-10) * 10 ** (snr_db / 10)))
    return wave + scale * noise


def fit_length(wave: torch.Tensor, n: int) -> torch.Tensor:
    """(S,) -> (n,): cut, or repeated until long enough."""
    if len(wave) == 0:
        return torch.zeros(n)
    return wave.repeat(math.ceil(n / len(wave)))[:n]


class Augmenter:
    """Applies `speeds` (speed perturbation: one drawn per utterance) and an AugmentConfig to (S,) float32 waves
    at 16 kHz; `other` loads a random other utterance (for babble) given a generator."""

    def __init__(self, cfg: AugmentConfig, speeds: Sequence[float] = (), seed: int = 0):
        self.cfg, self.speeds = cfg, list(speeds)
        self.rooms = room_impulse_responses(cfg.rooms, cfg.rt60, seed) if cfg.reverb else []

    def __call__(self, wave: torch.Tensor, rng: torch.Generator,
                 other: Callable[[torch.Generator], torch.Tensor] | None = None) -> torch.Tensor:
        """wave (S,) -> (S / speed,), augmented with the draws of `rng`."""
        cfg = self.cfg
        if self.speeds:
            wave = change_speed(wave, self.speeds[randint(rng, len(self.speeds))])
        if self._happens(cfg.reverb, rng):
            wave = reverberate(wave, self.rooms[randint(rng, len(self.rooms))])
        if other is not None and self._happens(cfg.babble, rng):
            low, high = cfg.babble_talkers
            talkers = [fit_length(other(rng), len(wave)) for _ in range(low + randint(rng, high - low + 1))]
            wave = at_snr(wave, torch.stack(talkers).sum(0), uniform(rng, cfg.snr_db))
        if self._happens(cfg.noise, rng):
            noise = colored_noise(len(wave), randint(rng, 3), np.random.default_rng(randint(rng, 2**31)))
            wave = at_snr(wave, torch.from_numpy(noise).float(), uniform(rng, cfg.snr_db))
        if self._happens(cfg.telephone, rng):
            wave = telephone(wave)
        if self._happens(cfg.gain, rng):
            wave = wave * 10 ** (uniform(rng, cfg.gain_db) / 20)
        if self._happens(cfg.clip, rng):
            level = uniform(rng, cfg.clip_level) * wave.abs().max()
            wave = wave.clamp(-level, level)
        return wave.clamp(-1.0, 1.0)

    @staticmethod
    def _happens(probability: float, rng: torch.Generator) -> bool:
        return probability > 0 and torch.rand((), generator=rng).item() < probability


def randint(rng: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (), generator=rng))


def uniform(rng: torch.Generator, bounds: Sequence[float]) -> float:
    low, high = bounds
    return low + (high - low) * torch.rand((), generator=rng).item()


def change_speed(wave: torch.Tensor, speed: float) -> torch.Tensor:
    """(S,) -> (S / speed,): the wave read as if recorded at speed x the sample rate (tempo and pitch together,
    as Kaldi's speed perturbation)."""
    return AF.resample(wave, round(SAMPLE_RATE * speed), SAMPLE_RATE) if speed != 1.0 else wave


def reverberate(wave: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """(S,) convolved with a room impulse response (K,), cut to (S,) and brought back to the dry peak level."""
    wet = AF.fftconvolve(wave, rir)[: len(wave)]
    return wet * (wave.abs().max() / wet.abs().max().clamp(min=1e-8))


def telephone(wave: torch.Tensor) -> torch.Tensor:
    """(S,) -> (S,): through a telephone channel: 300-3400 Hz, 8 kHz, 8-bit mu-law, and back to 16 kHz."""
    narrow = AF.resample(wave, SAMPLE_RATE, TELEPHONE_RATE)
    low, high = TELEPHONE_BAND_HZ
    for _ in range(2):  # two biquads each way: 24 dB per octave outside the band
        narrow = AF.highpass_biquad(AF.lowpass_biquad(narrow, TELEPHONE_RATE, high), TELEPHONE_RATE, low)
    scale = narrow.abs().max().clamp(min=1e-8)
    coded = AF.mu_law_decoding(AF.mu_law_encoding(narrow / scale, 256), 256) * scale
    return fit_length(AF.resample(coded, TELEPHONE_RATE, SAMPLE_RATE), len(wave))
