"""Training and evaluation: config-driven loops, checkpoints, DDP, metrics/logging, and the demo.

- :func:`adafuse.engine.trainer.train` — one training run from a :class:`adafuse.config.Config`.
- :func:`adafuse.engine.trainer.evaluate_checkpoint` — evaluation of a checkpoint (writes ``eval/``).
- :func:`adafuse.engine.demo.run_demo` — TSN vs AdaFuse on the synthetic benchmark (`adafuse demo`).

Import the submodules directly; this package imports nothing heavy by itself.
"""
