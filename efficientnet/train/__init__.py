"""Training engine: RunConfig + recipes, strategies, the in-graph loop, checkpoints, evaluation.

Entry point: `efficientnet.train.trainer.run(config)` (what `python -m efficientnet.main` calls).
Checkpoint layout and inference loading: `efficientnet.train.checkpointing`.
"""
