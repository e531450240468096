"""What importing the package does to the process: TensorFlow's oneDNN kernels on by default."""

import os
import subprocess
import sys

_PROBE = ("import efficientnet, tensorflow\n"
          "from tensorflow.python.util import _pywrap_util_port\n"
          "print('onednn', _pywrap_util_port.IsMklEnabled())\n")


def _onednn_in_fresh_process(setting):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-1]


def test_importing_the_package_before_tensorflow_turns_on_onednn_and_the_user_can_opt_out():
    assert _onednn_in_fresh_process(None) == "True"
    assert _onednn_in_fresh_process("0") == "False"


def test_the_test_session_runs_the_kernels_users_get():
    from tensorflow.python.util import _pywrap_util_port

    expected = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")
    assert _pywrap_util_port.IsMklEnabled() is expected
