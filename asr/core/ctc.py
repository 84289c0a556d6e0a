"""What CTC can train on: an utterance whose transcript needs more output steps than its audio gives the
model cannot be aligned, and is reported (asr check-manifest) or dropped (asr.training.datamodule)."""

from collections.abc import Sequence

import torch

from asr.core.audio import SAMPLE_RATE
from asr.core.manifest import Utterance
from asr.core.model import output_lengths
from asr.core.model_config import ModelConfig
from asr.core.text import normalize


def ctc_problems(utterances: Sequence[Utterance], tokenizer, model: ModelConfig,
                 speed: float = 1.0) -> list[str | None]:
    """For each utterance, why CTC cannot train `model` on it, or None: its text normalises to nothing or does
    not encode, or needs more output steps (labels + adjacent repeats, which need a blank between them) than
    its duration, played at `speed`, gives the model."""
    samples = torch.tensor([int(u.duration / speed * SAMPLE_RATE) for u in utterances], dtype=torch.long)  # (N,)
    steps = output_lengths(model, samples).tolist() if utterances else []
    problems = []
    for u, available in zip(utterances, steps):
        text = normalize(u.text)
        if u.text.strip() and not text:
            problems.append(f"nothing is left of the transcript {u.text!r} after normalisation (to A-Z, ' and space)")
            continue
        try:
            ids = tokenizer.encode(text)
        except ValueError as err:
            problems.append(str(err))
            continue
        needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
        problems.append(None if needed <= available else
                        f"the transcript needs {needed} output steps ({len(ids)} labels + repeats) but "
                        f"{u.duration:g} s of audio gives the model only {available}: CTC cannot align it")
    return problems
