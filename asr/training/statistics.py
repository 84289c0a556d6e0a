"""The per-bin feature statistics of a front-end that normalises globally (a streaming model's), estimated on its
training audio before training starts, as ESPnet's global MVN is: then fixed, and saved with the weights."""

import logging
import random

import torch

from asr.core.audio import AudioError, load_audio
from asr.core.config import ConfigError
from asr.core.manifest import read_manifest
from asr.core.model import DeepSpeech2

log = logging.getLogger(__name__)

UTTERANCES = 400  # drawn from the training manifests: about half an hour of speech


def needs_statistics(model: DeepSpeech2) -> bool:
    """Whether the model normalises globally and holds no statistics yet (a mean of exactly zero everywhere: a
    new model's, or one started from a bundle that normalised per utterance)."""
    return model.cfg.frontend.normalize == "global" and not bool(model.frontend.feature_mean.any())


@torch.no_grad()
def estimate_statistics(model: DeepSpeech2, manifests: list[str], seed: int, count: int = UTTERANCES) -> None:
    """Set the model's front-end mean and standard deviation (F,) from the frames of `count` utterances drawn
    from `manifests` with `seed`; unreadable files are skipped with a warning."""
    rows = [u for manifest in manifests for u in read_manifest(manifest)]
    total, squares, frames = 0.0, 0.0, 0
    for utterance in random.Random(seed).sample(rows, min(count, len(rows))):
        try:
            wave = torch.from_numpy(load_audio(utterance.audio_filepath))
        except AudioError as err:
            log.warning("feature statistics: skipped %s", err)
            continue
        feats = model.frontend.spectral_features(wave[None].to(model.frontend.feature_mean.device))[0]  # (F, T)
        total, squares, frames = total + feats.sum(-1), squares + feats.pow(2).sum(-1), frames + feats.shape[-1]
    if not frames:
        raise ConfigError(f"data.train_manifests: no readable audio in {', '.join(map(str, manifests))} to estimate "
                          "the global feature statistics from (frontend.normalize: global); check the audio paths")
    mean = total / frames
    model.frontend.feature_mean.copy_(mean)
    model.frontend.feature_std.copy_((squares / frames - mean.pow(2)).clamp(min=1e-10).sqrt())
    log.info("feature statistics (global normalisation) from %d frames of the training audio", frames)
