"""Turning CTC log-probabilities into token sequences."""

import torch

from .text import BLANK


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path: argmax per step, merge repeats, drop blanks.

    log_probs (B, T, V), lengths (B,) -> B token-id lists
    """
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    hypotheses = []
    for path, length in zip(best, lengths.tolist()):
        tokens = torch.unique_consecutive(path[:length])
        hypotheses.append(tokens[tokens != BLANK].tolist())
    return hypotheses
