"""PyTorch state dicts (efficientnet_pytorch and timm naming; zip, legacy and safetensors files)
restored into the Keras models without torch, and refused when unsafe or when they do not fit."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from efficientnet import models
from efficientnet.train import restore, torch_files, torch_names
from tests import torch_fixtures


def _randomised(model, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(size=variable.shape).astype("float32")
        if "moving_variance" in variable.path:
            value = np.abs(value) + 0.5
        variable.assign(value)
    return model


@pytest.fixture(scope="module")
def source_models():
    return {name: _randomised(models.build(name, image_size=32, num_classes=7), seed)
            for seed, name in enumerate(("efficientnet-lite0", "efficientnet-b0",
                                         "efficientnetv2-b0"))}


@pytest.mark.parametrize("model_name,naming,file_kind", [
    ("efficientnet-lite0", "efficientnet_pytorch", "legacy.pth"),
    ("efficientnet-b0", "efficientnet_pytorch", "zip.pth"),
    ("efficientnet-b0", "timm", "safetensors"),
    ("efficientnet-lite0", "timm", "zip.pth"),
    ("efficientnetv2-b0", "timm", "safetensors"),  # ConvBnAct, EdgeResidual, SE blocks
])
def test_state_dict_round_trip(tmp_path, source_models, model_name, naming, file_kind):
    source = source_models[model_name]
    state = torch_fixtures.keras_to_torch(source, model_name, naming)
    path = str(tmp_path / f"weights.{file_kind.split('.')[-1]}")
    torch_fixtures.WRITERS[file_kind](path, state)
    target = models.build(model_name, image_size=32, num_classes=7)
    report = restore.restore_pretrained(target, model_name, path, model_dir=str(tmp_path),
                                        verbose=False)
    assert report["format"] == "torch"
    assert len(report["restored"]) == len(target.weights)
    assert report["missing_in_checkpoint"] == [] and report["unused_in_checkpoint"] == []
    for mine, theirs in zip(target.weights, source.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(target(images, training=False), source(images, training=False),
                               rtol=1e-5, atol=1e-5)
    written = json.loads((tmp_path / "restore_report.json").read_text())
    assert written["source"] == path and len(written["restored"]) == len(target.weights)


def test_layouts_are_converted():
    state = {"conv.weight": np.arange(2 * 3 * 5 * 7, dtype="float32").reshape(2, 3, 5, 7)}
    hwio = torch_names._convert(state["conv.weight"], "Conv2D", "kernel")
    assert hwio.shape == (5, 7, 3, 2) and hwio[4, 6, 2, 1] == state["conv.weight"][1, 2, 4, 6]
    depthwise = np.arange(4 * 9, dtype="float32").reshape(4, 1, 3, 3)
    converted = torch_names._convert(depthwise, "DepthwiseConv2D", "kernel")
    assert converted.shape == (3, 3, 4, 1) and converted[1, 2, 3, 0] == depthwise[3, 0, 1, 2]
    dense = np.arange(6, dtype="float32").reshape(2, 3)
    assert torch_names._convert(dense, "Dense", "kernel").tolist() == dense.T.tolist()


def test_strided_and_half_tensors_read(tmp_path):
    base = np.arange(12, dtype="float32").reshape(3, 4)
    state = {"a": np.asfortranarray(base.T), "b": np.float16([1.5, -2.0]), "c": np.array(3, dtype=np.int64)}
    for kind, writer in torch_fixtures.WRITERS.items():
        path = str(tmp_path / f"x.{kind.split('.')[-1]}")
        writer(path, state)
        read = torch_files.read_state_dict(path)
        assert list(read) == ["a", "b", "c"]
        np.testing.assert_array_equal(read["a"], base.T)
        assert read["b"].dtype == np.float16 and read["b"].tolist() == [1.5, -2.0]
        assert read["c"].shape == () and int(read["c"]) == 3


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["legacy", "zip"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv_stem.weight": _Exploit(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    else:
        path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
                         + pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2)
                         + payload)
    with pytest.raises(torch_files.TorchFileError, match=r"refused to load.*(posix|os)\.system"):
        torch_files.read_state_dict(str(path))
    assert not marker.exists()
    model = models.build("efficientnet-lite0", image_size=32, num_classes=7)
    with pytest.raises(restore.RestoreError, match=r"^--restore_path .*evil\.pth: refused"):
        restore.restore_pretrained(model, "efficientnet-lite0", str(path), verbose=False)
    assert not marker.exists()


def test_first_tensor_that_does_not_fit_is_named(tmp_path, source_models):
    state = torch_fixtures.keras_to_torch(source_models["efficientnet-b0"], "efficientnet-b0",
                                          "efficientnet_pytorch")
    path = str(tmp_path / "b0.safetensors")
    torch_fixtures.write_safetensors(path, state)
    lite = models.build("efficientnet-lite0", image_size=32, num_classes=7)
    with pytest.raises(restore.RestoreError,
                       match=r"tensor _blocks\.0\._se_reduce\.weight \(8, 32, 1, 1\) has no place "
                             r"in efficientnet-lite0"):
        restore.restore_pretrained(lite, "efficientnet-lite0", path, verbose=False)
    b1 = models.build("efficientnet-b1", image_size=32, num_classes=7)  # block 1: no expansion
    with pytest.raises(restore.RestoreError, match=r"tensor _blocks\.1\._expand_conv\.weight "
                                                   r"\(96, 16, 1, 1\) has no place in "
                                                   r"efficientnet-b1 \(would be layer "
                                                   r"blocks_1_expand_conv\)"):
        restore.restore_pretrained(b1, "efficientnet-b1", path, verbose=False)
    short = str(tmp_path / "short.safetensors")
    torch_fixtures.write_safetensors(short, {k: v for k, v in state.items()
                                             if not k.startswith("_blocks.15.")})
    b0 = models.build("efficientnet-b0", image_size=32, num_classes=7)
    with pytest.raises(restore.RestoreError, match=r"has no tensor for "
                                                   r"blocks_15_expand_conv/kernel \(and 18 more"):
        restore.restore_pretrained(b0, "efficientnet-b0", short, verbose=False)
    wide = models.build("efficientnet-b4", image_size=32, num_classes=7)
    with pytest.raises(restore.RestoreError, match=r"tensor _conv_stem\.weight has shape "
                                                   r"\(32, 3, 3, 3\).*b4.s stem_conv/kernel is "
                                                   r"\(3, 3, 3, 48\)"):
        restore.restore_pretrained(wide, "efficientnet-b4", path, verbose=False)


def test_head_exclusion_and_class_count_message(tmp_path, source_models):
    state = torch_fixtures.keras_to_torch(source_models["efficientnet-lite0"],
                                          "efficientnet-lite0", "efficientnet_pytorch")
    path = str(tmp_path / "lite0.pth")
    torch_fixtures.write_zip(path, state)
    ten = models.build("efficientnet-lite0", image_size=32, num_classes=10)
    with pytest.raises(restore.RestoreError,
                       match=r"head/dense has 7 classes in the checkpoint and 10 in the model: "
                             r"add --restore_exclude=head/dense"):
        restore.restore_pretrained(ten, "efficientnet-lite0", path, verbose=False)
    for pattern in ("head/dense", "_fc"):
        report = restore.restore_pretrained(ten, "efficientnet-lite0", path, exclude=[pattern],
                                            verbose=False)
        assert report["excluded"] == ["head_dense/kernel", "head_dense/bias"]
        assert len(report["restored"]) == len(ten.weights) - 2


def test_unreadable_files_get_one_line(tmp_path):
    model = models.build("efficientnet-lite0", image_size=32, num_classes=7)
    missing = str(tmp_path / "nothing.pth")
    with pytest.raises(restore.RestoreError, match="no such PyTorch weights file"):
        restore.restore_pretrained(model, "efficientnet-lite0", missing, verbose=False)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(restore.RestoreError, match=r"junk\.safetensors: bad safetensors header"):
        restore.restore_pretrained(model, "efficientnet-lite0", str(junk), verbose=False)
    other = tmp_path / "other.pth"
    torch_fixtures.write_zip(other, {"fc1.weight": np.zeros((2, 2), "float32")})
    with pytest.raises(restore.RestoreError, match=r"neither efficientnet_pytorch .* first "
                                                   r"tensor is 'fc1\.weight'"):
        restore.restore_pretrained(model, "efficientnet-lite0", str(other), verbose=False)
