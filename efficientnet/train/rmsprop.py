"""RMSProp with TF1 semantics, in Keras alone (no TensorFlow import: it also runs on JAX)."""

from __future__ import annotations

import keras


class TF1RMSprop(keras.optimizers.RMSprop):
    """RMSProp as `tf.compat.v1.train.RMSPropOptimizer`: mean-square slots start at 1, not 0.

    With epsilon 1e-3 a zero start makes the first updates ~30x larger than the TF1 recipe's.
    """

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        for velocity in self._velocities:
            velocity.assign(keras.ops.ones(velocity.shape, velocity.dtype))
