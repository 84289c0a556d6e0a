"""The LightningModule: CTC loss, optimiser and schedule, validation WER, gradient norms; and fine-tuning's
start from a bundle's weights."""

import logging
import math

import lightning as L
import torch
import torch.nn.functional as F

from asr.core import config
from asr.core.bundle import load_bundle
from asr.core.decoding import greedy_decode
from asr.core.model import DeepSpeech2
from asr.core.paths import model_path
from asr.core.text import BLANK, tokenizer_from_dict
from asr.training.config import ExperimentConfig
from asr.training.metrics import ErrorRate

log = logging.getLogger(__name__)


class ASRModule(L.LightningModule):
    """CTC training of DeepSpeech2. Built from plain data, so checkpoints load with weights_only=True."""

    def __init__(self, experiment: dict, tokenizer: dict):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = config.from_dict(ExperimentConfig, experiment)
        self.tokenizer = tokenizer_from_dict(tokenizer)
        self.model = DeepSpeech2(self.cfg.model)
        self.val_errors = ErrorRate()

    def ctc_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean CTC loss of a batch, in float32 whatever the autocast precision, with its outputs."""
        log_probs, lengths = self.model(batch.waves, batch.wave_lengths)  # (B, T, V) float32, (B,)
        with torch.autocast(self.device.type, enabled=False):
            loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, lengths, batch.target_lengths,
                              blank=BLANK, zero_infinity=True)
        return loss, log_probs, lengths

    def training_step(self, batch, batch_idx):
        loss, _, _ = self.ctc_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.wave_lengths))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, log_probs, lengths = self.ctc_loss(batch)
        self.log("val/loss", loss, sync_dist=True, batch_size=len(batch.wave_lengths))
        best_paths = greedy_decode(log_probs.detach().float().cpu().numpy(), lengths.cpu().numpy())
        hypotheses = [self.tokenizer.decode(ids) for ids in best_paths]
        references = [self.tokenizer.decode(target[:n].tolist())
                      for target, n in zip(batch.targets, batch.target_lengths.tolist())]
        self.val_errors.update(references, hypotheses)

    def on_before_optimizer_step(self, optimizer):
        """Gradient flow: one 2-norm per layer, before clipping, computed only on the steps Lightning logs
        (every trainer.log_every_n_steps)."""
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log_dict(layer_grad_norms(self.model), on_step=True, on_epoch=False)

    def on_validation_epoch_end(self):
        scores = self.val_errors.compute()  # summed counts across ranks, then divided
        self.log_dict({f"val/{name}": value for name, value in scores.items()}, prog_bar=True)
        self.val_errors.reset()

    def configure_optimizers(self):
        opt = self.cfg.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                      weight_decay=opt.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, opt.warmup_ratio, opt.final_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def layer_grad_norms(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The 2-norm of each layer's gradient, keyed by module path up to the layer index: "grad_norm/convs.0",
    "grad_norm/rnns.1", "grad_norm/norms.1", "grad_norm/head". A layer whose norm sinks to 0 has stopped learning.
    """
    squares: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            parts = name.split(".")
            layer = ".".join(parts[:2] if len(parts) > 2 and parts[1].isdigit() else parts[:1])
            squares[layer] = squares.get(layer, 0) + param.grad.detach().float().pow(2).sum()
    return {f"grad_norm/{layer}": total.sqrt() for layer, total in squares.items()}


def init_weights(module: ASRModule, source: str, new_head: bool = False) -> None:
    """Copy a bundle's weights into the module's model, whose network is the bundle's (the config takes it from
    there: asr.training.config.fine_tuning_model); the tokenizer must be the config's.

    With `new_head`, the output layer is left as initialised and the tokenizer may differ: the encoder
    (front-end, convolutions, LSTMs) is transferred to a new vocabulary, as NeMo's change_vocabulary does.
    A streaming model started from a bidirectional bundle takes its forward LSTM directions and the rest, and
    keeps its own lookahead convolution (the identity) and front-end statistics (estimated before training).
    A model with more LSTM layers than the bundle takes the bundle's, with layers on top that pass their input on
    (pass_through_layers), so that it starts computing nearly what the bundle does.
    """
    path = model_path(source)
    model, tokenizer = load_bundle(path)
    if not new_head and tokenizer.to_dict() != module.tokenizer.to_dict():
        raise config.ConfigError(f"init_from {path}: the bundle's tokenizer differs from this config's "
                                 "(init_new_head=true keeps all but the output layer, which starts afresh)")
    weights = model.state_dict()
    if new_head:
        weights |= {f"head.{k}": v for k, v in module.model.head.state_dict().items()}
    converting = model.cfg.rnn_bidirectional and not module.model.cfg.rnn_bidirectional
    if converting:
        own = module.model.state_dict()
        weights = {name: value for name, value in weights.items() if name in own} | {
            name: value for name, value in own.items() if name.startswith(("lookahead.", "frontend.feature_"))}
    added = module.model.cfg.rnn_layers - model.cfg.rnn_layers
    if added:
        weights |= pass_through_layers(weights, module.model.state_dict(), model.cfg.rnn_layers,
                                       module.model.cfg.rnn_layers, module.model.cfg.rnn_merge == "concat")
    module.model.load_state_dict(weights)
    log.info("starting from the weights of %s%s%s", path, " (all but the output layer)" if new_head else
             " (its forward LSTM directions: a streaming model)" if converting else "",
             f" (and {added} LSTM layers on top that pass their input on)" if added else "")


PASS_GATE_BIAS = 3.0  # a pass-through layer's input and output gates nearly open (0.95), its forget gate nearly shut
PASS_SCALE = 0.1  # the weight of its cell input on its own input: small, so tanh(tanh(0.1 x)) is nearly 0.1 x


def pass_through_layers(weights: dict[str, torch.Tensor], own: dict[str, torch.Tensor], layers: int, target: int,
                        concat: bool) -> dict[str, torch.Tensor]:
    """Weights that deepen a model of `layers` LSTM layers (`weights`) to `target` (whose fresh weights are `own`)
    and leave its output nearly as it was (Net2DeeperNet, Chen et al. 2016): each new layer passes its input on,
    scaled, which the LayerNorm after it undoes; the norm of the bundle's last layer loses its scale and shift,
    which the new top norm takes over."""
    new = {}
    for name, value in own.items():
        if not name.startswith(tuple(f"rnns.{i}." for i in range(layers, target))):
            continue
        hidden, new[name] = value.shape[0] // 4, torch.zeros_like(value)  # rows: gates i, f, g, o, H each
        if name.endswith("weight_ih_l0"):  # (4H, I): the cell input g reads its own unit of the input
            offset = hidden if concat and ".backward_lstm." in name else 0
            new[name][2 * hidden:3 * hidden, offset:offset + hidden] = PASS_SCALE * torch.eye(hidden)
        elif name.endswith("bias_ih_l0"):
            new[name][:hidden] = new[name][3 * hidden:] = PASS_GATE_BIAS
            new[name][hidden:2 * hidden] = -PASS_GATE_BIAS
    for i in range(layers - 1, target - 1):  # the norms below the top one: no scale or shift
        new[f"norms.{i}.weight"] = torch.ones_like(own[f"norms.{i}.weight"])
        new[f"norms.{i}.bias"] = torch.zeros_like(own[f"norms.{i}.bias"])
    for part in ("weight", "bias"):  # the top one: the bundle's last
        new[f"norms.{target - 1}.{part}"] = weights[f"norms.{layers - 1}.{part}"]
    return new


def lr_factor(step: int, total: int, warmup_ratio: float, final_ratio: float) -> float:
    """One cycle: linear warm-up to the peak, then cosine decay to `final_ratio` of it at `total` steps."""
    warmup = max(round(warmup_ratio * total), 1)
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
