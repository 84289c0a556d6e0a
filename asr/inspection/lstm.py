"""A reference LSTM written from its equations, one time step at a time, to look inside trained layers.

    f_t  = sigmoid(W_f [h_{t-1}, x_t] + b_f)     forget gate: how much of the old cell state to keep
    i_t  = sigmoid(W_i [h_{t-1}, x_t] + b_i)     input gate: how much of the candidate to write
    c~_t = tanh(W_c [h_{t-1}, x_t] + b_c)        candidate cell state
    c_t  = f_t * c_{t-1} + i_t * c~_t            cell state, the layer's memory
    o_t  = sigmoid(W_o [h_{t-1}, x_t] + b_o)     output gate: how much of the memory to show
    h_t  = o_t * tanh(c_t)                       hidden state, the layer's output

nn.LSTM computes the same: it stacks the four gates in the order i, f, g (= c~), o and splits each W
into an input part W_ih (4H, I) and a recurrent part W_hh (4H, H), each with a bias; `lstm_weights`
puts them back into the form above. A Python loop over time: for reading and inspection, not training.

Shapes: B batch, T time steps, I input size, H hidden size.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


@dataclass
class LSTMWeights:
    """One direction of one LSTM layer in the equations' form: each w_* (H, H + I) reads [h_{t-1}, x_t]."""

    w_f: torch.Tensor
    b_f: torch.Tensor  # (H,)
    w_i: torch.Tensor
    b_i: torch.Tensor
    w_c: torch.Tensor
    b_c: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor


class LSTMActivations(NamedTuple):
    """What the cell computes: each (B, H) for one step, (B, T, H) for a sequence."""

    input: torch.Tensor  # i_t
    forget: torch.Tensor  # f_t
    output: torch.Tensor  # o_t
    candidate: torch.Tensor  # c~_t
    cell: torch.Tensor  # c_t
    hidden: torch.Tensor  # h_t, what nn.LSTM returns


def lstm_weights(lstm: nn.LSTM, layer: int = 0, reverse: bool = False) -> LSTMWeights:
    """The weights of layer `layer` of an nn.LSTM, of its reverse direction if `reverse`.

    A DeepSpeech2 layer k is two single-layer LSTMs: lstm_weights(model.rnns[k].forward_lstm) and
    lstm_weights(model.rnns[k].backward_lstm), the second reading each utterance reversed.
    """
    if not 0 <= layer < lstm.num_layers:
        raise ValueError(f"layer {layer}: this LSTM has layers 0 to {lstm.num_layers - 1}")
    if reverse and not lstm.bidirectional:
        raise ValueError("reverse=True: this LSTM is not bidirectional, it has only the forward direction")
    if lstm.proj_size:
        raise ValueError("an LSTM with proj_size projects h_t, which these equations leave out; use proj_size=0")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    w_ih, w_hh = getattr(lstm, "weight_ih" + suffix), getattr(lstm, "weight_hh" + suffix)  # (4H, I), (4H, H)
    w = torch.cat([w_hh, w_ih], dim=1).detach()  # (4H, H + I): reads [h_{t-1}, x_t]
    b = w.new_zeros(w.shape[0])  # (4H,)
    if lstm.bias:
        b = (getattr(lstm, "bias_ih" + suffix) + getattr(lstm, "bias_hh" + suffix)).detach()
    (w_i, w_f, w_c, w_o), (b_i, b_f, b_c, b_o) = w.chunk(4), b.chunk(4)  # PyTorch's gate order: i, f, g, o
    return LSTMWeights(w_f, b_f, w_i, b_i, w_c, b_c, w_o, b_o)


def lstm_step(w: LSTMWeights, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> LSTMActivations:
    """One step: x_t (B, I), h_{t-1} (B, H), c_{t-1} (B, H) -> the step's activations, each (B, H)."""
    hx = torch.cat([h, x], dim=-1)  # [h_{t-1}, x_t] (B, H + I)
    f = torch.sigmoid(hx @ w.w_f.T + w.b_f)
    i = torch.sigmoid(hx @ w.w_i.T + w.b_i)
    c_tilde = torch.tanh(hx @ w.w_c.T + w.b_c)
    c = f * c + i * c_tilde
    o = torch.sigmoid(hx @ w.w_o.T + w.b_o)
    h = o * torch.tanh(c)
    return LSTMActivations(i, f, o, c_tilde, c, h)


def run_lstm(w: LSTMWeights, x: torch.Tensor) -> LSTMActivations:
    """Read x (B, T, I) from t = 0 on, starting from h = c = 0 -> activations at every step, each (B, T, H)."""
    if x.shape[1] == 0:
        raise ValueError("run_lstm needs at least one time step")
    h = c = x.new_zeros(x.shape[0], w.b_f.shape[0])  # (B, H)
    steps = []
    for t in range(x.shape[1]):
        step = lstm_step(w, x[:, t], h, c)
        h, c = step.hidden, step.cell
        steps.append(step)
    return LSTMActivations(*(torch.stack(values, dim=1) for values in zip(*steps)))
