"""Waveform augmentation: each effect changes the audio as configured, keeps the length (all but speed), and is
the same for the same seed."""

import math

import pytest
import torch

from asr.core.audio import SAMPLE_RATE
from asr.core.augment import AugmentConfig, Augmenter, room_impulse_responses, telephone

torch.set_num_threads(1)


def speech_like(seconds=1.0, seed=0) -> torch.Tensor:
    """(S,) a 200 Hz buzz with harmonics up to 6 kHz, amplitude-modulated like syllables, peak 0.5."""
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(torch.sin(2 * math.pi * 200 * k * t) / k for k in range(1, 31))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + seed)
    wave = wave * envelope
    return 0.5 * wave / wave.abs().max()


def band_energy(wave: torch.Tensor, low: float, high: float) -> float:
    """Share of the wave's energy between `low` and `high` Hz."""
    power = torch.fft.rfft(wave).abs() ** 2
    freqs = torch.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    return (power[(freqs >= low) & (freqs < high)].sum() / power.sum()).item()


EFFECTS = {  # one effect on, always
    "reverb": dict(reverb=1.0, rooms=4),
    "noise": dict(noise=1.0),
    "babble": dict(babble=1.0),
    "telephone": dict(telephone=1.0),
    "gain": dict(gain=1.0),
    "clip": dict(clip=1.0),
}


def augment(cfg: AugmentConfig, wave: torch.Tensor, seed: int, speeds=()) -> torch.Tensor:
    others = [speech_like(0.7, seed=s) for s in range(1, 4)]
    other = lambda rng: others[int(torch.randint(len(others), (), generator=rng))]  # noqa: E731
    return Augmenter(cfg, speeds, seed=0)(wave.clone(), torch.Generator().manual_seed(seed), other)


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_each_effect_changes_the_audio_keeps_its_length_and_is_deterministic_for_a_seed(effect):
    cfg = AugmentConfig(**EFFECTS[effect])
    wave = speech_like()
    a, b = augment(cfg, wave, 1), augment(cfg, wave, 1)
    assert a.shape == wave.shape and a.dtype == torch.float32
    assert not torch.allclose(a, wave, atol=1e-3)
    assert torch.equal(a, b)
    assert a.abs().max() <= 1.0
    if effect != "telephone":  # the one effect with nothing to draw
        assert any(not torch.equal(a, augment(cfg, wave, seed)) for seed in range(2, 6))


def test_nothing_changes_when_every_probability_is_zero():
    wave = speech_like()
    assert torch.equal(augment(AugmentConfig(), wave, 1), wave)
    assert not AugmentConfig().enabled and AugmentConfig(noise=0.1).enabled


def test_probabilities_hold_over_many_draws():
    cfg, wave = AugmentConfig(gain=0.3), speech_like(0.1)
    changed = sum(not torch.equal(augment(cfg, wave, seed), wave) for seed in range(400))
    assert 90 <= changed <= 150  # 120 expected


def test_speed_changes_the_length_as_configured():
    wave = speech_like()
    assert len(augment(AugmentConfig(), wave, 0, speeds=[1.25])) == 12800
    assert len(augment(AugmentConfig(), wave, 0, speeds=[0.8])) == 20000


def test_noise_lands_at_the_drawn_snr():
    wave = speech_like()
    for snr in (0.0, 10.0, 20.0):
        noisy = augment(AugmentConfig(noise=1.0, snr_db=[snr, snr]), wave, 3)
        measured = 10 * math.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
        assert measured == pytest.approx(snr, abs=0.5)


def test_telephone_removes_what_a_phone_line_cannot_carry():
    wave = speech_like()
    phone = telephone(wave)
    assert band_energy(wave, 4000, 8000) > 0.01
    assert band_energy(phone, 4000, 8000) < 1e-4
    assert band_energy(phone, 0, 250) < band_energy(wave, 0, 250) / 5  # the 200 Hz fundamental is cut


def test_room_impulse_responses_vary_with_room_and_seed():
    rooms = room_impulse_responses(6, [0.2, 0.9], seed=0)
    assert rooms[0].abs().argmax() == 0  # the direct path first: speech is not delayed
    assert all(r.pow(2).sum().item() == pytest.approx(1.0, abs=1e-4) for r in rooms)
    assert len({len(r) for r in rooms}) > 1  # rooms of different sizes and reverberation times
    again = room_impulse_responses(6, [0.2, 0.9], seed=0)
    assert all(torch.equal(r, s) for r, s in zip(rooms, again))
    assert not torch.equal(rooms[0], room_impulse_responses(1, [0.2, 0.9], seed=1)[0])


def test_room_impulse_responses_redraw_a_room_too_large_for_the_drawn_reverberation_time():
    # 0.15 s is shorter than many drawn rooms can reverberate: pyroomacoustics refuses those, and they are redrawn
    rooms = room_impulse_responses(48, [0.15, 0.9], 125)
    assert len(rooms) == 48


def test_reverberation_spreads_energy_in_time():
    click = torch.zeros(SAMPLE_RATE)
    click[100] = 1.0
    wet = augment(AugmentConfig(reverb=1.0, rooms=2, rt60=[0.6, 0.6]), click, 0)
    assert wet[2000:].abs().max() > 1e-3  # a tail 0.12 s after the click
    assert wet[:100].abs().max() < 1e-6  # nothing before it (FFT rounding aside)


def test_clipping_flattens_the_peaks():
    wave = speech_like()
    clipped = augment(AugmentConfig(clip=1.0, clip_level=[0.5, 0.5]), wave, 0)
    assert clipped.abs().max() == pytest.approx(0.25, abs=1e-6)
    assert (clipped.abs() >= 0.25 - 1e-6).sum() > 100


@pytest.mark.parametrize("bad, message", [
    (dict(noise=1.5), "data.augment.noise is a probability"),
    (dict(snr_db=[30, 5]), "data.augment.snr_db: a \\[low, high\\] range"),
    (dict(rt60=[0.3]), "data.augment.rt60: a \\[low, high\\] range"),
    (dict(gain_db=[-20.0, 0.0, 10.0]), "data.augment.gain_db: a \\[low, high\\] range"),
    (dict(clip_level=[]), "data.augment.clip_level: a \\[low, high\\] range"),
    (dict(babble_talkers=[0, 0]), "data.augment.babble_talkers: at least one talker"),
    (dict(reverb=0.5, rooms=0), "reverb needs rooms >= 1"),
    (dict(rt60=[0.05, 0.9]), "data.augment.rt60 must start at 0.1 s or more"),
])
def test_bad_settings_are_refused_with_the_key(bad, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**bad)
