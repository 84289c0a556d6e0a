"""THE BASELINE of scripts/bench_train.py: DeepSpeech2 training written the way most ports write it
(deepspeech.pytorch, many tutorials), for comparison only; asr never uses it.

- features computed per utterance in the DataLoader workers (`__getitem__` returns a spectrogram (F, T)),
- random batches of a fixed size (shuffle=True), padded to the longest utterance of each batch,
- one bidirectional nn.LSTM per layer with pack_padded_sequence around it,
- a plain PyTorch loop: forward, CTC loss, backward, gradient clipping, AdamW step.

The network is asr's in every other respect (the same convolutions, layer norms, head and sizes, so the
same parameter count), and the features are asr's front-end run on one utterance at a time.
"""

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
from torch.utils.data import DataLoader

from asr.core.features import Frontend
from asr.core.model import DeepSpeech2, ModelConfig
from asr.core.text import BLANK
from asr.training.dataset import SpeechDataset


class FeatureDataset(SpeechDataset):
    """Utterances -> (features (F, T), target (L,)): audio decoded and its features computed in the worker."""

    def __init__(self, utterances, tokenizer, model: ModelConfig):
        super().__init__(utterances, tokenizer)
        self.frontend = Frontend(model.frontend).train()

    @torch.no_grad()
    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave, target, _ = super().__getitem__(i)
        feats, _ = self.frontend(wave[None], torch.tensor([len(wave)]))  # (1, F, T), SpecAugment included
        return feats[0], target


def collate(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """[(features (F, T_i), target (L_i,))] -> features (B, F, T_max) zero-padded, frame lengths (B,),
    targets (B, L_max), target lengths (B,)."""
    feats, targets = zip(*items)
    return (pad_sequence([f.T for f in feats], batch_first=True).transpose(1, 2),
            torch.tensor([f.shape[1] for f in feats]),
            pad_sequence(targets, batch_first=True), torch.tensor([len(t) for t in targets]))


class Precomputed(nn.Module):
    """Stands in for the front-end: the batch already holds features (B, F, T) and frame lengths (B,)."""

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return feats, lengths


class PackedBiLSTM(nn.Module):
    """nn.LSTM(bidirectional=True) over a packed sequence, directions summed (or concatenated)."""

    def __init__(self, input_size: int, hidden_size: int, merge: str):
        super().__init__()
        self.merge, self.hidden_size = merge, hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, I), lengths (B,) -> (B, T, H) for "sum" or (B, T, 2H) for "concat"."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return out[..., :self.hidden_size] + out[..., self.hidden_size:] if self.merge == "sum" else out


def baseline_model(cfg: ModelConfig) -> DeepSpeech2:
    """asr's network with precomputed features in and a packed nn.LSTM per layer: the same parameters."""
    model = DeepSpeech2(cfg)
    model.frontend = Precomputed()
    model.rnns = nn.ModuleList(PackedBiLSTM(rnn.forward_lstm.input_size, cfg.rnn_hidden, cfg.rnn_merge)
                               for rnn in model.rnns)
    return model


def train_steps(utterances, tokenizer, cfg: ModelConfig, batch_size: int, steps: int, warmup: int,
                workers: int, lr: float = 1e-3, clip: float = 5.0) -> dict:
    """`warmup` + `steps` optimizer steps on random batches -> {"seconds", "cpu_seconds", "audio_seconds",
    "padded_seconds", "steps"} of the `steps` after the warm-up (data-loading waits included)."""
    model = baseline_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loader = DataLoader(FeatureDataset(utterances, tokenizer, cfg), batch_size=batch_size, shuffle=True,
                        num_workers=workers, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    hop = cfg.frontend.hop_ms / 1000
    audio = padded = 0.0
    for step, (feats, lengths, targets, target_lengths) in enumerate(loader):
        if step == warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        log_probs, out_lengths = model(feats, lengths)  # (B, T', V)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, blank=BLANK,
                          zero_infinity=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if step >= warmup:
            audio += lengths.sum().item() * hop
            padded += lengths.max().item() * len(lengths) * hop
        if step + 1 == warmup + steps:
            break
    else:
        raise ValueError(f"{len(utterances)} utterances give fewer than {warmup + steps} batches of {batch_size}")
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "audio_seconds": audio, "padded_seconds": padded, "steps": steps}
