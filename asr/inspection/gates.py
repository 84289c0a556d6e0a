"""`asr inspect gates`: one LSTM layer of a trained model at work on one utterance.

The model runs on the file as in `asr transcribe`; the chosen layer's LSTM (one direction of one BiLSTM)
is then run again by the reference LSTM of asr/inspection/lstm.py on the very input the model gave it, which exposes
its gates. The plot shows, under the spectrogram and the transcript with word timings, the forget, input
and output gates averaged over the units, the norm of the cell state, and the hidden state of the most
active units, all on one time axis.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from asr.core.audio import SAMPLE_RATE, AudioError, load_audio
from asr.core.config import ConfigError
from asr.core.decoding import greedy_decode, word_alignment
from asr.core.model import DeepSpeech2, output_lengths
from asr.inspection.lstm import LSTMActivations, lstm_weights, run_lstm

DIRECTIONS = ("forward", "backward")


@dataclass
class GateCurves:
    """One LSTM layer and direction over one utterance: every curve has one value per output step (T,)."""

    audio_filepath: str
    layer: int
    direction: str
    text: str  # the greedy transcript
    words: list[tuple[str, float, float]]  # (word, start, end) in seconds
    step_seconds: float  # time between output steps
    time: list[float]  # the centre of each output step, seconds
    forget: list[float]  # f_t averaged over the units
    input: list[float]  # i_t averaged over the units
    output: list[float]  # o_t averaged over the units
    cell_norm: list[float]  # ||c_t||, the 2-norm over the units
    units: list[int]  # the most active units (largest mean |h_t|), most active first
    hidden: list[list[float]]  # h_t of those units (N, T)


@torch.inference_mode()
def trace_layer(model: DeepSpeech2, wave: torch.Tensor, layer: int, direction: str):
    """Run the model on one waveform (S,) and the reference LSTM on one layer's input.

    -> features (F, T_frames), log-probabilities (T, V), activations of the layer, each (T, H)
    """
    if not 0 <= layer < len(model.rnns):
        raise ConfigError(f"layer {layer}: the model has LSTM layers 0 to {len(model.rnns) - 1}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if direction == "backward" and not model.cfg.rnn_bidirectional:
        raise ConfigError("a streaming model's LSTMs read forward only: there is no backward direction to show")
    seen = {}
    hooks = [model.frontend.register_forward_hook(lambda module, args, out: seen.update(features=out[0])),
             model.rnns[layer].register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))]
    try:
        log_probs, _ = model(wave[None], torch.tensor([len(wave)], device=wave.device))  # (1, T, V)
    finally:
        for hook in hooks:
            hook.remove()
    bilstm, x = model.rnns[layer], seen["x"]  # x (1, T, I)
    if direction == "forward":
        acts = run_lstm(lstm_weights(bilstm.forward_lstm), x)
    else:  # one utterance: reversed within its length is simply reversed
        acts = LSTMActivations(*(a.flip(1) for a in run_lstm(lstm_weights(bilstm.backward_lstm), x.flip(1))))
    return seen["features"][0], log_probs[0], LSTMActivations(*(a[0] for a in acts))


def gate_curves(model: DeepSpeech2, tokenizer, path, layer: int = 0, direction: str = "forward",
                units: int = 32, device: str | torch.device = "cpu") -> tuple[GateCurves, torch.Tensor]:
    """The curves of one layer and direction over an audio file, and the model's features (F, T_frames)."""
    if units < 1:
        raise ConfigError(f"units={units}: show at least one unit")
    wave = torch.from_numpy(load_audio(path))  # (S,)
    if output_lengths(model.cfg, torch.tensor([len(wave)])) < 1:
        raise AudioError(path, f"{len(wave) / SAMPLE_RATE:.3f} s of audio is too short for one output step")
    features, log_probs, acts = trace_layer(model, wave.to(device), layer, direction)
    step = model.cfg.output_step_seconds
    steps = torch.arange(len(log_probs))
    best_path = log_probs.argmax(dim=-1).tolist()  # (T,)
    text = tokenizer.decode(greedy_decode(log_probs[None].float().cpu().numpy(), [len(log_probs)])[0])
    top = acts.hidden.abs().mean(dim=0).argsort(descending=True)[:units]  # (N,)
    curves = GateCurves(
        audio_filepath=str(path), layer=layer, direction=direction, text=text,
        words=[(word, round(start * step, 3), round(end * step, 3))
               for word, start, end in word_alignment(best_path, tokenizer)],
        step_seconds=step, time=rounded((steps + 0.5) * step),
        forget=rounded(acts.forget.mean(dim=1)), input=rounded(acts.input.mean(dim=1)),
        output=rounded(acts.output.mean(dim=1)), cell_norm=rounded(acts.cell.norm(dim=1)),
        units=top.tolist(), hidden=rounded(acts.hidden[:, top].T),
    )
    return curves, features.cpu()


def rounded(values: torch.Tensor) -> list:
    """A tensor as (nested) lists of floats with 5 decimals, for JSON."""
    return values.cpu().double().round(decimals=5).tolist()


def plot_gates(curves: GateCurves, features: torch.Tensor, out) -> Path:
    """Draw the curves under the spectrogram (F, T_frames) and the transcript; write a PNG to `out`."""
    fig = Figure(figsize=(10, 9), layout="constrained")
    FigureCanvasAgg(fig)
    spec, gates, cell, heat = fig.subplots(4, 1, sharex=True, height_ratios=[3, 2, 1.2, 3])
    end = len(curves.time) * curves.step_seconds

    spec.imshow(features.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, end, 0, features.shape[0]))
    spec.set_ylabel("feature bin")
    spec.set_title(f'"{curves.text}"  ({Path(curves.audio_filepath).name}, LSTM layer {curves.layer}, '
                   f"{curves.direction})", fontsize=10)
    for word, start, stop in curves.words:
        spec.axvline(start, color="white", linewidth=0.8, linestyle="--")
        spec.text((start + stop) / 2, features.shape[0] * 0.97, word, color="white", fontsize=9,
                  ha="center", va="top")
        for ax in (gates, cell):
            ax.axvspan(start, stop, color="0.94", zorder=0)

    for name, color in (("forget", "tab:blue"), ("input", "tab:green"), ("output", "tab:red")):
        gates.plot(curves.time, getattr(curves, name), color=color, label=f"{name} gate")
    gates.set_ylim(0, 1)
    gates.set_ylabel("mean over units")
    gates.legend(loc="upper right", ncols=3, fontsize=8)

    cell.plot(curves.time, curves.cell_norm, color="black")
    cell.set_ylabel("||c_t||")

    heat.imshow(curves.hidden, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest",
                extent=(0, end, len(curves.units), 0))
    heat.set_yticks([i + 0.5 for i in range(len(curves.units))], curves.units, fontsize=5)
    heat.set_ylabel(f"h_t of the {len(curves.units)} most active units\n(blue -1, red +1)")
    heat.set_xlabel("seconds")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
