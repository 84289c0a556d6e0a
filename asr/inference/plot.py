"""`asr transcribe FILE --plot out.png`: what the model heard and what it said, on one time axis.

Three panels: the model's input features (F, T_frames) with the words marked on them; the CTC
posteriors (V, T), one row per token with blank at the bottom; the word alignment, each word's span as a
bar as high as its confidence.
"""

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from asr.core.audio import AudioError, audio_duration, load_audio
from asr.core.config import ConfigError
from asr.core.features import Frontend
from asr.core.text import BLANK, WORD_SEPARATOR
from asr.inference.chunking import MAX_CHUNK_SECONDS

MAX_PLOT_SECONDS = MAX_CHUNK_SECONDS  # a plot shows one piece the model decoded whole; longer is unreadable


@torch.inference_mode()
def posteriors(recognizer, wave: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One 16 kHz waveform (S,) -> the model's features (F, T_frames), computed by its front-end's settings, and
    token posteriors (T, V), from its network (ONNX or torch)."""
    features, frames = Frontend(recognizer.network.cfg.frontend).eval()(torch.from_numpy(wave)[None],
                                                                        torch.tensor([len(wave)]))  # (1, F, T_frames)
    log_probs, steps = recognizer.log_probs([wave])  # (1, T, V), (1,)
    return features[0, :, :frames[0]], torch.from_numpy(log_probs[0, :steps[0]]).exp()


def check_plottable(sources: list) -> None:
    """ConfigError unless `sources` is one audio file, AudioError unless it is short enough to plot."""
    if len(sources) != 1:
        raise ConfigError(f"--plot draws one audio file; the inputs name {len(sources)}")
    if not isinstance(path := sources[0], (str, os.PathLike)):
        raise ConfigError("--plot draws an audio file, not standard input")
    if (seconds := audio_duration(path)) > MAX_PLOT_SECONDS:
        raise AudioError(path, f"{seconds:.1f} s is too long to plot; --plot draws recordings of up to "
                               f"{MAX_PLOT_SECONDS:.0f} s (cut one out, e.g. `sox {path} part.wav trim 0 20`)")


def plot_file(recognizer, path, transcript, out) -> Path:
    """Draw the features, posteriors and `transcript`'s words (a Transcript of `path`) to the PNG `out`."""
    check_plottable([path])
    features, probs = posteriors(recognizer, load_audio(path))
    cfg = recognizer.network.cfg
    return draw(transcript, features, probs, recognizer.tokenizer.vocab, cfg.frontend.hop_ms / 1000,
                cfg.output_step_seconds, out)


def draw(transcript, features: torch.Tensor, probs: torch.Tensor, vocab: list[str], hop_seconds: float,
         step_seconds: float, out) -> Path:
    """features (F, T_frames) every hop_seconds, probs (T, V) every step_seconds, the transcript's timed words."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    spec, post, align = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 1])
    end = probs.shape[0] * step_seconds

    spec.imshow(features.numpy(), origin="lower", aspect="auto", cmap="magma",
                extent=(0, features.shape[1] * hop_seconds, 0, features.shape[0]))
    spec.set_ylabel("feature bin")
    spec.set_title(f'"{transcript.text}"  ({Path(transcript.audio_filepath).name})', fontsize=10)
    for w in transcript.words:
        spec.axvline(w.start, color="white", linewidth=0.8, linestyle="--")
        spec.text((w.start + w.end) / 2, features.shape[0] * 0.97, w.word, color="white", fontsize=9,
                  ha="center", va="top")

    labels = ["blank" if i == BLANK else ("space" if t == WORD_SEPARATOR else t) for i, t in enumerate(vocab)]
    post.imshow(probs.T.numpy(), origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
                interpolation="nearest", extent=(0, end, -0.5, len(vocab) - 0.5))
    post.set_yticks(range(len(vocab)), labels, fontsize=6 if len(vocab) <= 64 else 3)
    post.set_ylabel("CTC posterior per token")

    for w in transcript.words:
        align.bar(w.start, w.confidence, width=w.end - w.start, align="edge", color="tab:blue", alpha=0.6)
        align.text((w.start + w.end) / 2, 0.05, w.word, rotation=90, fontsize=8, ha="center", va="bottom")
    align.set_ylim(0, 1)
    align.set_xlim(0, end)
    align.set_ylabel("word\nconfidence")
    align.set_xlabel("seconds")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
