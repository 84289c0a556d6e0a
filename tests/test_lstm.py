"""The reference LSTM of asr/inspection/lstm.py against nn.LSTM and against the equations worked by hand."""

import math

import pytest
import torch
from torch import nn

from asr.core.model import BiLSTM, reverse_padded
from asr.inspection.lstm import lstm_step, lstm_weights, run_lstm


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_one_step_matches_the_equations_worked_by_hand():
    lstm = nn.LSTM(1, 1)  # each gate a different weight, so a mixed-up gate order shows
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))  # i, f, g, o
        lstm.weight_hh_l0.copy_(torch.tensor([[0.5], [-1.0], [0.0], [1.0]]))
        lstm.bias_ih_l0.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
        lstm.bias_hh_l0.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    x, h, c = 1.0, 0.5, 2.0
    i = sigmoid(1 * x + 0.5 * h + 0)  # 1.25
    f = sigmoid(2 * x - 1 * h + 1)  # 2.5
    c_tilde = math.tanh(3 * x + 0 * h - 1)  # 2
    o = sigmoid(4 * x + 1 * h + 0.5)  # 5
    c_new = f * c + i * c_tilde
    h_new = o * math.tanh(c_new)

    step = lstm_step(lstm_weights(lstm), torch.tensor([[x]]), torch.tensor([[h]]), torch.tensor([[c]]))
    expected = {"input": i, "forget": f, "output": o, "candidate": c_tilde, "cell": c_new, "hidden": h_new}
    assert {name: getattr(step, name).item() for name in expected} == pytest.approx(expected, abs=1e-6)
    with torch.no_grad():
        _, (h_torch, c_torch) = lstm(torch.tensor([[[x]]]), (torch.tensor([[[h]]]), torch.tensor([[[c]]])))
    assert (h_torch.item(), c_torch.item()) == pytest.approx((h_new, c_new), abs=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_reproduces_a_deep_bidirectional_nn_lstm(bias):
    torch.manual_seed(0)
    lstm = nn.LSTM(8, 16, num_layers=3, bidirectional=True, batch_first=True, bias=bias)
    x = torch.randn(2, 25, 8)  # (B, T, I)
    with torch.no_grad():
        expected, (h_n, c_n) = lstm(x)  # (B, T, 2H); (layers * 2, B, H)
    layer_input = x
    for layer in range(3):
        forward = run_lstm(lstm_weights(lstm, layer), layer_input)
        backward = run_lstm(lstm_weights(lstm, layer, reverse=True), layer_input.flip(1))  # in reversed time
        for direction, acts in enumerate([forward, backward]):
            torch.testing.assert_close(acts.hidden[:, -1], h_n[2 * layer + direction], atol=1e-5, rtol=0)
            torch.testing.assert_close(acts.cell[:, -1], c_n[2 * layer + direction], atol=1e-5, rtol=0)
        layer_input = torch.cat([forward.hidden, backward.hidden.flip(1)], dim=-1)  # (B, T, 2H)
    torch.testing.assert_close(layer_input, expected, atol=1e-5, rtol=0)


def test_reproduces_both_directions_of_a_model_layer_on_a_padded_batch():
    torch.manual_seed(1)
    layer = BiLSTM(12, 16, merge="concat")
    x, lengths = torch.randn(3, 20, 12), torch.tensor([20, 13, 7])  # (B, T, I), (B,)
    with torch.no_grad():
        expected = layer(x, lengths)  # (B, T, 2H)
    forward = run_lstm(lstm_weights(layer.forward_lstm), x).hidden
    backward = reverse_padded(run_lstm(lstm_weights(layer.backward_lstm), reverse_padded(x, lengths)).hidden, lengths)
    torch.testing.assert_close(torch.cat([forward, backward], dim=-1), expected, atol=1e-5, rtol=0)


def test_gates_lie_in_their_ranges():
    torch.manual_seed(2)
    acts = run_lstm(lstm_weights(nn.LSTM(4, 6, batch_first=True)), 3 * torch.randn(2, 30, 4))
    for gate in (acts.input, acts.forget, acts.output):
        assert gate.shape == (2, 30, 6) and gate.min() >= 0 and gate.max() <= 1
    assert acts.candidate.abs().max() <= 1 and acts.hidden.abs().max() <= 1


def test_a_layer_or_direction_the_lstm_lacks_is_refused():
    with pytest.raises(ValueError, match="layers 0 to 1"):
        lstm_weights(nn.LSTM(4, 6, num_layers=2), layer=2)
    with pytest.raises(ValueError, match="not bidirectional"):
        lstm_weights(nn.LSTM(4, 6), reverse=True)
    with pytest.raises(ValueError, match="proj_size"):
        lstm_weights(nn.LSTM(4, 6, proj_size=3))
