"""efficientnet.data.cpu_xla: the input pipeline's CPU XLA programs on one thread each.

Each case runs in a fresh process: the setting only takes before TensorFlow starts.
"""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints what `setup` (Python statements run before TensorFlow starts) left: whether XLA split the
# loop of a large elementwise program over threads (ParallelTaskAssigner's outer dimension
# partitions in the optimised HLO) and the thread settings.
_PROBE = """
import json
import efficientnet
import tensorflow as tf
from efficientnet.data import cpu_xla
from efficientnet.config import schema as config
from efficientnet.train import distribute

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(3)
result = {{}}
{setup}
program = tf.function(lambda x: tf.sin(x) * 3 + tf.cos(x), jit_compile=True)
hlo = program.experimental_get_compiler_ir(tf.zeros([256, 256, 3]))(stage="optimized_hlo")
result.update(split='"outer_dimension_partitions":["2"]' in hlo,
              intra=tf.config.threading.get_intra_op_parallelism_threads(),
              inter=tf.config.threading.get_inter_op_parallelism_threads(),
              again=cpu_xla.single_thread_cpu_xla(),
              value=float(program(tf.fill([2, 2, 3], 0.5))[0, 0, 0]))
print(json.dumps(result))
"""


def _probe(setup: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


EXPECTED_VALUE = pytest.approx(float(tf.sin(0.5) * 3 + tf.cos(0.5)), rel=1e-6)


def test_by_default_xla_splits_a_large_loop_over_the_two_intra_op_threads():
    result = _probe("")
    assert result == {"split": True, "intra": 2, "inter": 3, "again": False,
                      "value": EXPECTED_VALUE}


def test_single_thread_cpu_xla_keeps_the_thread_settings_and_stops_the_split():
    result = _probe("result['applied'] = cpu_xla.single_thread_cpu_xla()")
    # Once TensorFlow runs, a second call changes nothing ("again").
    assert result == {"applied": True, "split": False, "intra": 2, "inter": 3, "again": False,
                      "value": EXPECTED_VALUE}


def test_single_thread_cpu_xla_leaves_a_process_configured_beyond_threads_alone():
    # Restarting TensorFlow would drop the soft-placement setting: nothing changes.
    result = _probe("tf.config.set_soft_device_placement(False)\n"
                    "result['applied'] = cpu_xla.single_thread_cpu_xla()\n"
                    "result['soft'] = tf.config.get_soft_device_placement()")
    assert result["applied"] is False and result["soft"] is False and result["split"] is True


@pytest.mark.parametrize("mode, xla, split", [("train_and_eval", "auto", False),
                                              ("train_and_eval", "on", True),
                                              ("eval", "auto", True)])
def test_training_strategy_gives_cpu_xla_one_thread_unless_the_step_is_xla_on_cpu(mode, xla,
                                                                                   split):
    result = _probe(f"distribute.create_strategy(config.Experiment().override(mode={mode!r}, xla={xla!r}))")
    assert result["split"] is split and (result["intra"], result["inter"]) == (2, 3)
