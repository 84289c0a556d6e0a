import pytest
import torch

from asr.core.config import from_dict
from asr.core.model import BiLSTM, DeepSpeech2, ModelConfig, count_parameters, output_lengths, reverse_padded
from asr.training.config import load_experiment_config


def tiny_config(**changes) -> ModelConfig:
    cfg = dict(frontend={"kind": "log_mel", "n_mels": 40}, conv_channels=[4, 4], conv_kernels=[[11, 11], [11, 5]],
               conv_strides=[[2, 2], [2, 1]], rnn_layers=2, rnn_hidden=16, dropout=0.0, vocab_size=29)
    return from_dict(ModelConfig, {**cfg, **changes})


def padded(lengths: list[int], width: int | None = None, features: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(len(lengths), width or max(lengths), features)
    return x * (torch.arange(x.shape[1])[None, :, None] < torch.tensor(lengths)[:, None, None])


def test_reverse_padded_reverses_within_each_length():
    x = torch.arange(1, 6).repeat(2, 1)[:, :, None].float()  # (2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[..., 0].tolist() == [[5, 4, 3, 2, 1], [3, 2, 1, 4, 5]]
    assert torch.equal(reverse_padded(out, torch.tensor([5, 3])), x)


@pytest.mark.parametrize("merge", ["sum", "concat"])
def test_bidirectional_layer_on_a_padded_batch_equals_one_utterance_at_a_time(merge):
    layer = BiLSTM(3, 8, merge).eval()
    lengths = [9, 4, 7, 1]
    x = padded(lengths, features=3)
    out = layer(x, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        alone = layer(x[i:i + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-6, rtol=1e-5)


def test_bidirectional_layer_matches_a_packed_torch_lstm():
    layer = BiLSTM(3, 8, "concat").eval()
    reference = torch.nn.LSTM(3, 8, batch_first=True, bidirectional=True).eval()
    with torch.no_grad():
        for name, value in layer.forward_lstm.named_parameters():
            getattr(reference, name).copy_(value)
            getattr(reference, f"{name}_reverse").copy_(getattr(layer.backward_lstm, name))
    lengths = [9, 4, 7]
    x = padded(lengths, features=3)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True)
    out = layer(x, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out[i, :n], expected[i, :n], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("samples", [512, 1000, 1600, 4321, 16000, 16161])
def test_output_length_arithmetic_matches_a_real_forward_pass(samples):
    model = DeepSpeech2(tiny_config()).eval()
    lengths = torch.tensor([samples])
    log_probs, out_lengths = model(torch.randn(1, samples), lengths)
    predicted = output_lengths(model.cfg, lengths)
    assert log_probs.shape[1] == out_lengths.item() == predicted.item()


def test_model_on_a_batch_equals_each_utterance_alone():
    model = DeepSpeech2(tiny_config()).eval()
    lengths = torch.tensor([16000, 5000, 11000])
    waves = padded(lengths.tolist())[..., 0]
    log_probs, out_lengths = model(waves, lengths)
    assert log_probs.shape[-1] == 29
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
    for i, n in enumerate(lengths.tolist()):
        alone, alone_lengths = model(waves[i:i + 1, :n], lengths[i:i + 1])
        assert alone_lengths.item() == out_lengths[i]
        torch.testing.assert_close(log_probs[i, :out_lengths[i]], alone[0], atol=1e-4, rtol=1e-4)


def test_linear_front_end_feeds_the_deepspeech2_convolutions():
    model = DeepSpeech2(tiny_config(frontend={"kind": "linear"}, conv_kernels=[[41, 11], [21, 11]]))
    assert model.conv_feature_size() == 41  # 161 -> 81 -> 41 bins


@pytest.mark.parametrize("name, low, high", [("small", 5e6, 15e6), ("ds2", 80e6, 90e6)])
def test_shipped_configs_have_the_documented_size(name, low, high):
    cfg = load_experiment_config(name)
    assert low <= count_parameters(DeepSpeech2(cfg.model)) <= high
