"""deploy/: the Kubernetes manifests parse, say what the docs say, and their commands train on
this machine with exactly the TF_CONFIG each replica gets (addresses moved to loopback)."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_multi_host import free_base_port

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
# What the smoke runs change in a manifest's trainer flags: its volumes become tmp folders.
SMOKE = ["--mode=train", "--train_steps=2", "--use_synthetic_data"]


def load(name):
    with open(os.path.join(DEPLOY, name), encoding="utf-8") as handle:
        return list(yaml.safe_load_all(handle))


def flag(args, name):
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, args)
    return values[0]


def smoke_args(args, model_dir):
    """The manifest's trainer flags for a tiny local run: the smoke variant of its recipe, its
    model_dir moved to `model_dir`, synthetic data instead of its data_dir."""
    kept = [a for a in args if not a.startswith(("--data_dir=", "--model_dir=", "--recipe=",
                                                 "--precision="))]
    return [*kept, f"--recipe={flag(args, 'recipe')}-smoke", f"--model_dir={model_dir}", *SMOKE]


def check_volumes(pod_spec, container, args):
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert set(mounts) == set(volumes) == {"data", "models"}
    assert all("persistentVolumeClaim" in v for v in volumes.values())
    assert flag(args, "data_dir").startswith(mounts["data"] + "/")
    assert flag(args, "model_dir").startswith(mounts["models"] + "/")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def operator_tf_config(job, replica_type, index, namespace="default"):
    """TF_CONFIG as the Kubeflow training operator writes it (kubeflow/training-operator,
    pkg/controller.v1/tensorflow: genTFConfigJSONStr / genClusterSpec)."""
    cluster = {}
    for rtype, spec in job["spec"]["tfReplicaSpecs"].items():
        container = next(c for c in spec["template"]["spec"]["containers"]
                         if c["name"] == "tensorflow")
        port = next((p["containerPort"] for p in container.get("ports", [])
                     if p.get("name") == "tfjob-port"), 2222)
        name = job["metadata"]["name"]
        cluster[rtype.lower()] = [f"{name}-{rtype.lower()}-{i}.{namespace}.svc:{port}"
                                  for i in range(spec["replicas"])]
    return {"cluster": cluster, "task": {"type": replica_type.lower(), "index": index},
            "environment": "cloud"}


def run_replicas(commands_and_envs, timeout=420):
    processes = [subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for command, env in commands_and_envs]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def python_command(command):
    """The container's `python ...` run with this interpreter."""
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_tfjob_manifest():
    (job,) = load("tfjob.yaml")
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "TFJob"
    assert list(job["spec"]["tfReplicaSpecs"]) == ["Worker"]  # worker 0 is the chief
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow"
    assert container["command"] == ["python", "-m", "efficientnet.main"]
    check_volumes(pod, container, container["args"])
    config = operator_tf_config(job, "Worker", 1)
    assert config["cluster"]["worker"] == ["efficientnet-b0-worker-0.default.svc:2222",
                                           "efficientnet-b0-worker-1.default.svc:2222"]


def test_indexed_job_manifest():
    service, job = load("indexed-job.yaml")
    assert (service["kind"], job["kind"]) == ("Service", "Job")
    assert service["spec"]["clusterIP"] == "None"
    name = job["metadata"]["name"]
    assert service["spec"]["selector"] == {"job-name": name}
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    (container,) = pod["containers"]
    command = container["command"]
    cut = command.index("--")
    assert command[:4] == ["python", "-m", "rank_tables", "tf-config-from-index"]
    assert command[cut + 1:] == ["python", "-m", "efficientnet.main"]
    ours = command[4:cut]
    assert int(flag(ours, "workers")) == spec["completions"] == spec["parallelism"] == 2
    assert flag(ours, "host_pattern") == f"{name}-{{index}}.{service['metadata']['name']}"
    port = int(flag(ours, "port"))
    assert port == service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]
    check_volumes(pod, container, container["args"])
    printed = subprocess.run(
        [sys.executable, *command[1:cut]], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "JOB_COMPLETION_INDEX": "1"}, check=True)
    assert json.loads(printed.stdout) == {
        "cluster": {"worker": [f"{name}-0.{name}:2222", f"{name}-1.{name}:2222"]},
        "task": {"type": "worker", "index": 1}}


@pytest.mark.slow
def test_tfjob_replicas_train_with_the_operators_tf_config(tmp_path):
    (job,) = load("tfjob.yaml")
    container = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    base = free_base_port()
    runs = []
    for index in range(2):
        config = operator_tf_config(job, "Worker", index)
        # The operator's config with each DNS name moved to a loopback port of this machine.
        config["cluster"]["worker"] = [f"127.0.0.1:{base + i}" for i in range(2)]
        runs.append((python_command(container["command"])
                     + smoke_args(container["args"], tmp_path / "models"),
                     {"TF_CONFIG": json.dumps(config)}))
    outputs = run_replicas(runs)
    assert "step: 2/2" in outputs[0]
    assert os.path.exists(tmp_path / "models" / "checkpoint")


@pytest.mark.slow
def test_indexed_job_pods_train_from_their_index(tmp_path):
    _, job = load("indexed-job.yaml")
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    cut = command.index("--")
    # Every pod on this machine: the pod addresses become loopback ports, nothing else changes.
    ours = [a for a in command[4:cut] if not a.startswith(("--host_pattern=", "--port="))]
    ours += ["--host_pattern=127.0.0.1", f"--port={free_base_port()}", "--port_step=1"]
    full = python_command(command[:4] + ours + ["--"] + python_command(command[cut + 1:])
                          + smoke_args(container["args"], tmp_path / "models"))
    outputs = run_replicas([(full, {"JOB_COMPLETION_INDEX": str(i)}) for i in range(2)])
    assert "step: 2/2" in outputs[0]
    assert os.path.exists(tmp_path / "models" / "checkpoint")


def test_a_chief_replica_counts_as_a_worker(monkeypatch):
    """A TFJob with `Chief: 1` + `Worker: 1` gives each pod a one-entry "worker" list: the
    chief must still make it a two-process MultiWorkerMirrored job, not two lone trainers."""
    from efficientnet.config import get_experiment
    from efficientnet.train import distribute

    job = {"metadata": {"name": "b0"}, "spec": {"tfReplicaSpecs": {
        rtype: {"replicas": 1, "template": {"spec": {"containers": [{"name": "tensorflow"}]}}}
        for rtype in ("Chief", "Worker")}}}
    config = operator_tf_config(job, "Worker", 0)
    assert config["cluster"] == {"chief": ["b0-chief-0.default.svc:2222"],
                                 "worker": ["b0-worker-0.default.svc:2222"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    monkeypatch.setattr(distribute.tf.distribute, "MultiWorkerMirroredStrategy", lambda: "mwms")
    assert distribute.create_strategy(get_experiment("b0-imagenet-rmsprop-smoke")) == "mwms"


def test_dockerfile_installs_the_project_with_a_tensorflow_extra():
    import tomllib

    text = open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8").read()
    assert "ARG EXTRA=cpu" in text
    assert 'pip install --no-cache-dir ".[${EXTRA}]"' in text
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    extras = project["optional-dependencies"]
    assert extras["gpu"][0] == "tensorflow[and-cuda]==2.21.0; sys_platform == 'linux'"
    assert extras["cpu"][0].startswith("tensorflow-cpu==2.21.0")
    # No TensorFlow wheel in the base: the gpu extra could not remove it again.
    assert not any(dep.startswith("tensorflow") for dep in project["dependencies"])
    (tfjob,), (_, job) = load("tfjob.yaml"), load("indexed-job.yaml")
    pods = [tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"],
            job["spec"]["template"]["spec"]]
    assert {c["image"] for pod in pods for c in pod["containers"]} == {"efficientnet-toolkit:gpu"}
