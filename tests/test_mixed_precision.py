"""What must stay float32 under mixed_bfloat16 / mixed_float16: batch-norm statistics, the
logits, the loss and the optimizer slots (docs/gpu.md). bfloat16 keeps 8 bits of mantissa, so
any of these in bfloat16 turns a small variance or an update of 1e-4 into noise or NaN."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet import models
from efficientnet.train.fused_batch_norm import FusedBatchNormalization
from efficientnet.train.optimization import cross_entropy
from efficientnet.train.rmsprop import TF1RMSprop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"], indirect=True)
@pytest.mark.parametrize("layer", [keras.layers.BatchNormalization, FusedBatchNormalization])
def test_batch_norm_statistics_are_float32(policy, layer):
    # Channel values 1000 + small steps: in 16-bit arithmetic the mean rounds by ~4 and the
    # variance of the steps (~20) is lost; in float32 it is exact to 1e-5.
    rng = np.random.default_rng(0)
    compute = tf.bfloat16 if policy == "mixed_bfloat16" else tf.float16
    x = tf.cast(1000.0 + 8.0 * rng.integers(-2, 3, size=(16, 4, 4, 3)), compute)
    bn = layer(momentum=0.0, epsilon=1e-3)
    out = bn(x, training=True)
    reference = tf.cast(x, tf.float32).numpy()
    for weight in (bn.moving_mean, bn.moving_variance, bn.gamma, bn.beta):
        assert weight.dtype == "float32"
    np.testing.assert_allclose(bn.moving_mean.numpy(), reference.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), reference.var(axis=(0, 1, 2)),
                               rtol=1e-4)
    assert out.dtype == compute
    assert np.all(np.isfinite(tf.cast(out, tf.float32).numpy()))


@pytest.mark.parametrize("policy", ["mixed_bfloat16"], indirect=True)
def test_model_logits_loss_and_optimizer_slots_are_float32(policy):
    model = models.build("efficientnet-b0", num_classes=10, image_size=32,
                         batch_norm_layer=FusedBatchNormalization)
    assert model.layers[1].compute_dtype == "bfloat16"  # the body does run in bfloat16
    assert model.output.dtype == "float32"  # head_dense: softmax and loss see float32 logits
    assert {v.dtype for v in model.weights} == {"float32"}  # variables (incl. BN statistics)
    logits = tf.constant([[30.0, -30.0]], tf.bfloat16)
    assert cross_entropy(tf.constant([[0.0, 1.0]]), logits, 0.1).dtype == tf.float32
    optimizer = TF1RMSprop(learning_rate=0.01, rho=0.9, momentum=0.9, epsilon=1e-3)
    optimizer.build(model.trainable_variables)
    assert {v.dtype for v in optimizer.variables if "iteration" not in v.path} == {"float32"}


JAX_STEP = """
import json, sys
from benchmarks import gpu_jax
keras = gpu_jax._keras_jax("mixed_bfloat16")
import jax, jax.numpy as jnp
from efficientnet import models
model = models.build("efficientnet-b0", num_classes=10, image_size=32)
optimizer = gpu_jax._tf1_rmsprop(0.016 * 8 / 256)
step = gpu_jax._train_step_fn(keras, model, optimizer, 0.1, 1e-5)
state = gpu_jax._state(model, optimizer)
key = jax.random.PRNGKey(0)
images = jax.random.normal(key, (8, 32, 32, 3), jnp.float32)
labels = jax.nn.one_hot(jax.random.randint(key, (8,), 0, 10), 10)
losses = []
for _ in range(4):
    loss, state = step(state, images, labels)
    losses.append(float(loss))
stats = [v for v in state[1] if v.dtype != jnp.uint32]
print(json.dumps({"losses": losses, "loss_dtype": str(loss.dtype),
                  "stat_dtypes": sorted({str(v.dtype) for v in stats}),
                  "stats_finite": all(bool(jnp.all(jnp.isfinite(v))) for v in stats),
                  "weight_dtypes": sorted({str(v.dtype) for v in state[0]})}))
"""


@pytest.mark.slow
def test_jax_benchmark_step_under_bfloat16_stays_finite():
    """benchmarks/gpu_jax.py's step (the one whose B0 loss went NaN on an H100), on CPU."""
    out = subprocess.run([sys.executable, "-c", JAX_STEP], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(np.isfinite(result["losses"])), result
    assert result["loss_dtype"] == "float32"
    assert result["stat_dtypes"] == result["weight_dtypes"] == ["float32"]
    assert result["stats_finite"]
