"""Training on top of the core: the experiment config, the LightningModule, the data module and its sampler,
checkpoints and fault handling. The only layer that imports Lightning."""
