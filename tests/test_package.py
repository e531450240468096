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


def test_startup_notices_are_dropped_and_other_lines_kept():
    from efficientnet import without_startup_notices

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\n"
            "I0000 00:00:1.0  1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
            "E0000 real error from TensorFlow\n"
            "last line without newline")
    assert without_startup_notices(text) == ("E0000 real error from TensorFlow\n"
                                             "last line without newline")


def test_command_lines_import_tensorflow_without_its_startup_notices():
    code = ("import sys, efficientnet\n"
            "efficientnet.quiet_tensorflow_logs()\n"
            "import tensorflow\n"
            "sys.stderr.write('the only line\\n')\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0
    assert result.stderr == "the only line\n"
    # The user asked for TensorFlow's logs: nothing is filtered.
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert "oneDNN custom operations are on" in result.stderr
