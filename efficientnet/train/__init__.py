"""Training engine: flags -> Experiment, strategies, the in-graph loop, checkpoints, evaluation.

Entry point: `efficientnet.train.trainer.run(experiment)` (what `python -m efficientnet.main`
calls). Configuration lives in `efficientnet.config`; checkpoint layout and inference loading in
`efficientnet.train.checkpointing`.
"""
