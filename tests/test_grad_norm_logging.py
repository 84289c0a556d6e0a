"""Per-layer gradient norms are logged every trainer.log_every_n_steps and computed only on those steps."""

import csv

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from asr.core import config
from asr.core.text import CharTokenizer
from asr.training import module as training_module
from asr.training.config import load_experiment_config
from asr.training.dataset import collate
from asr.training.module import ASRModule


def test_grad_norms_computed_and_logged_only_on_logging_steps(tmp_path, monkeypatch):
    torch.manual_seed(0)
    calls = []
    real = training_module.layer_grad_norms
    monkeypatch.setattr(training_module, "layer_grad_norms", lambda model: calls.append(1) or real(model))
    cfg = load_experiment_config("tiny")
    tokenizer = CharTokenizer()
    cfg.model.vocab_size = len(tokenizer)
    items = [(torch.randn(16000), torch.tensor(tokenizer.encode("HELLO")), i) for i in range(12)]
    loader = DataLoader(items, batch_size=2, collate_fn=collate)
    trainer = L.Trainer(max_steps=6, log_every_n_steps=3, logger=CSVLogger(tmp_path), accelerator="cpu", devices=1,
                        limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(ASRModule(config.to_dict(cfg), tokenizer.to_dict()), train_dataloaders=loader)
    rows = list(csv.DictReader((tmp_path / "lightning_logs" / "version_0" / "metrics.csv").open()))
    logged = [int(row["step"]) for row in rows if row.get("grad_norm/rnns.0")]
    assert logged == [2, 5]  # steps 3 and 6, counted from 0
    assert all(float(row["grad_norm/head"]) > 0 for row in rows if row.get("grad_norm/head"))
    assert len(calls) == 2  # not on the 4 steps that are not logged
