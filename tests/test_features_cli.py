import shutil
import sys
import warnings
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from adakit.cli import app
from adakit.data.features import load_npz
from adakit.errors import AdakitError, ConfigError, DataError

CLASSES = ("back_pack", "bike")
# measured on the committed features: max |difference| 0.0 over all 498 dslr images, on an AVX-512 Intel Xeon and
# on an AVX2-only AMD EPYC (there only since the extractor asks onnxruntime for full-precision int8 arithmetic:
# before, 1.3); the tolerance leaves room for other CPUs' kernels
ATOL = 1e-3


@pytest.fixture(scope="module")
def office31_dslr(data_root):
    images = data_root / "office31" / "images" / "dslr" / "images"
    ref = data_root / "office31" / "features-mobilenetv2" / "dslr.npz"
    model = data_root / "models" / "mobilenetv2-12-int8_with_feat.onnx"
    for p in (images, ref, model):
        if not p.exists():
            pytest.skip(f"{p} not found")
    return images, ref, model


@pytest.fixture
def small_dslr(office31_dslr, tmp_path):
    """2 classes x 3 real dslr images; returns (folder, their rows in the committed feature file)."""
    images, _, _ = office31_dslr
    all_ids = [f"{c.name}/{f.name}" for c in sorted(images.iterdir()) for f in sorted(c.iterdir())]
    dst = tmp_path / "dslr"
    rows = []
    for c in CLASSES:
        (dst / c).mkdir(parents=True)
        for f in sorted((images / c).iterdir())[:3]:
            shutil.copy(f, dst / c / f.name)
            rows.append(all_ids.index(f"{c}/{f.name}"))
    return dst, rows


def test_features_command_matches_committed_features(office31_dslr, small_dslr, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[test]' brings it)")
    _, ref_path, model = office31_dslr
    folder, rows = small_dslr
    out = tmp_path / "cache" / "dslr.npz"
    res = CliRunner().invoke(app, ["features", str(folder), "--out", str(out), "--model", str(model),
                                   "--batch-size", "4", "--threads", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "6 images, 1280-d features" in res.output
    ref = np.load(ref_path)
    got = np.load(out)
    assert set(got.files) == {"feat", "y", "classes", "ids", "image_root", "extractor", "whole_folder",
                              "image_bytes"}
    made = str(got["extractor"])
    assert made.startswith(f"ONNX {model.name} (sha256 ") and "centre crop 224" in made
    assert got["feat"].shape == (6, 1280) and got["feat"].dtype == np.float32
    np.testing.assert_allclose(got["feat"], ref["feat"][rows], atol=ATOL, rtol=0)
    assert list(got["classes"]) == list(CLASSES)
    np.testing.assert_array_equal(got["y"], [0, 0, 0, 1, 1, 1])
    assert got["ids"][0] == "back_pack/frame_0001.jpg"
    # the npz loader reads what the command wrote
    d = load_npz(out, "dslr")
    assert d.input_shape == (1280,) and d.classes == list(CLASSES) and len(d) == 6
    assert d.image_path(0) == str(folder.resolve() / "back_pack" / "frame_0001.jpg") and d.ids[0] == "dslr/0"
    # an image moved after the extraction: the cache still holds the folder as it was, and says so
    (folder / "back_pack" / "frame_0001.jpg").rename(folder / "bike" / "moved.jpg")
    with pytest.warns(UserWarning, match="1 of 6 images it was extracted from are no longer in .*re-run `adakit "
                                         "features`"):
        load_npz(out, "dslr")


def test_source_and_target_features_extracted_in_two_ways_are_refused(tiny_images, tmp_path):
    """Two 1280-d MobileNetV2 extractors (the ONNX model and torchvision's) give features of the same width in
    different spaces; the .npz records what made it, and a pair made in two ways is refused."""
    import torchvision

    from adakit.config import DataConfig
    from adakit.data import load_domains
    from adakit.features import cache_features

    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=3).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    kw = {"backbone": "resnet18", "weights": str(tmp_path / "r18.pth"), "device": "cpu", "resize": 36,
          "show_progress": False}
    for name, size in (("src", 32), ("tar", 32), ("other", 28)):
        cache_features(tiny_images, tmp_path / "f" / f"{name}.npz", image_size=size, **kw)
    cfg = DataConfig(format="npz", root=str(tmp_path / "f"), source="src", target="tar")
    assert len(load_domains(cfg, 0).pool) == 4
    with pytest.raises(DataError, match=r"the source features \(src: resnet18, .* centre crop 32\) and the target "
                                        r"features \(other: resnet18, .* centre crop 28\) were extracted in two ways"):
        load_domains(cfg.model_copy(update={"target": "other"}), 0)


def test_the_same_extractor_check_compares_the_weights_file_not_the_path_as_typed(tiny_images, tmp_path,
                                                                                   monkeypatch):
    """The record held --weights as typed: one file by a relative and an absolute path was refused, and other weights
    saved under the same path were accepted."""
    import torchvision

    from adakit.config import DataConfig
    from adakit.data import load_domains
    from adakit.features import cache_features

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")
    kw = {"backbone": "resnet18", "device": "cpu", "resize": 36, "image_size": 32, "show_progress": False}
    cache_features(tiny_images, tmp_path / "f" / "src.npz", weights="r18.pth", **kw)
    cache_features(tiny_images, tmp_path / "f" / "tar.npz", weights=str(tmp_path / "r18.pth"), **kw)
    made = str(np.load(tmp_path / "f" / "src.npz")["extractor"])
    assert made.startswith("resnet18, weights r18.pth (sha256 ") and str(tmp_path) not in made
    cfg = DataConfig(format="npz", root=str(tmp_path / "f"), source="src", target="tar")
    assert len(load_domains(cfg, 0).pool) == 4
    # a file of an older adakit recorded the path as typed: its file name is what both records hold
    z = dict(np.load(tmp_path / "f" / "tar.npz"))
    z["extractor"] = np.asarray(made.replace(made.split(", weights ")[1].split(";")[0], str(tmp_path / "r18.pth")))
    np.savez(tmp_path / "f" / "old.npz", **z)
    assert len(load_domains(cfg.model_copy(update={"target": "old"}), 0).pool) == 4
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")  # other weights
    cache_features(tiny_images, tmp_path / "f" / "new.npz", weights="r18.pth", **kw)
    with pytest.raises(DataError, match=r"\(new: resnet18, weights r18\.pth \(sha256 [0-9a-f]{12}\); .*were extracted "
                                        r"in two ways"):
        load_domains(cfg.model_copy(update={"target": "new"}), 0)


def test_imagenet_features_record_which_imagenet_weights(tiny_images, tmp_path, monkeypatch):
    """Features made with 'imagenet' weights recorded only that word, so a source and a target made with two
    torchvision / timm versions whose default weights for the model differ (timm's default tags have changed) passed
    as one feature space. The record names the checkpoint now; an older file's bare 'imagenet' still matches."""
    import torchvision

    from adakit.config import DataConfig
    from adakit.data import load_domains
    from adakit.data.features import same_extractor
    from adakit.features import cache_features
    from adakit.models import backbones

    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr(backbones, "imagenet_state_dict", lambda name: state)  # (offline: no real checkpoint)
    kw = {"backbone": "resnet18", "weights": "imagenet", "device": "cpu", "image_size": 32, "resize": 36,
          "show_progress": False}
    cache_features(tiny_images, tmp_path / "f" / "src.npz", **kw)
    made = str(np.load(tmp_path / "f" / "src.npz")["extractor"])
    assert made == "resnet18, weights imagenet (resnet18-f37072fd.pth); images resized to 36, centre crop 32"
    url, path = backbones.imagenet_checkpoint("resnet18")
    monkeypatch.setattr(backbones, "imagenet_checkpoint", lambda name: (url, path.with_name("resnet18-0123abcd.pth")))
    cache_features(tiny_images, tmp_path / "f" / "tar.npz", **kw)  # another torchvision's default weights
    cfg = DataConfig(format="npz", root=str(tmp_path / "f"), source="src", target="tar")
    with pytest.raises(DataError, match=r"weights imagenet \(resnet18-0123abcd\.pth\).* were extracted in two ways"):
        load_domains(cfg, 0)
    older = made.replace(" (resnet18-f37072fd.pth)", "")
    assert same_extractor(made, older) and same_extractor(older, made) and same_extractor(older, older)
    assert not same_extractor(made, older.replace("resnet18", "resnet34"))


def test_a_feature_file_notices_images_added_to_its_folder(tiny_images, tmp_path):
    """Only images gone were noticed; an image added to the folder after the extraction was missed silently. A file
    made from an image list (its folder holds other images) says nothing about them."""
    from adakit.features import cache_features

    kw = {"backbone": "resnet18", "weights": None, "device": "cpu", "image_size": 32, "resize": 36,
          "show_progress": False}
    out, _ = cache_features(tiny_images, tmp_path / "f.npz", **kw)
    (tiny_images / "list.txt").write_text("cat/0.png 0\ndog/1.png 1\n")
    listed, _ = cache_features(tiny_images / "list.txt", tmp_path / "l.npz", fmt="image_list", **kw)
    shutil.copy(tiny_images / "cat" / "0.png", tiny_images / "cat" / "new.png")
    with pytest.warns(UserWarning, match=r"f\.npz: 1 image\(s\) were added to .*tiny since \(e\.g\. cat/new\.png\); "
                                         r"its features and labels are those of the folder at extraction time"):
        load_npz(out, "f")
    (tiny_images / "dog" / "0.png").unlink()
    with pytest.warns(UserWarning, match=r"1 of 4 images .* no longer in .*; 1 image\(s\) were added"):
        load_npz(out, "f")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_npz(listed, "l")) == 2


def test_features_from_an_image_list(office31_dslr, small_dslr, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[test]' brings it)")
    _, ref_path, model = office31_dslr
    folder, rows = small_dslr
    lst = tmp_path / "dslr.txt"
    lst.write_text("dslr/bike/frame_0001.jpg 1\ndslr/back_pack/frame_0001.jpg 0\n")
    (tmp_path / "classes.txt").write_text("back_pack\nbike\n")
    from adakit.features import cache_features

    out, shape = cache_features(lst, tmp_path / "l.npz", model=model, fmt="image_list", threads=1,
                                show_progress=False)
    got = np.load(out)
    assert shape == (2, 1280) and list(got["y"]) == [1, 0]
    np.testing.assert_allclose(got["feat"], np.load(ref_path)["feat"][[rows[3], rows[0]]], atol=ATOL, rtol=0)


def test_missing_onnxruntime_says_how_to_install(monkeypatch, office31_dslr, small_dslr, tmp_path):
    from adakit.features import OnnxFeatureExtractor

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(AdakitError, match="pip install onnxruntime"):
        OnnxFeatureExtractor(office31_dslr[2])
    folder, _ = small_dslr
    res = CliRunner().invoke(app, ["features", str(folder), "--out", str(tmp_path / "x.npz"), "--quiet",
                                   "--model", str(office31_dslr[2])])
    assert res.exit_code == 2 and "onnxruntime" in res.output
    assert not (tmp_path / "x.npz").exists()


def test_bad_model_and_output_name(office31_dslr, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[test]' brings it)")
    from adakit.features import OnnxFeatureExtractor

    with pytest.raises(DataError, match="ONNX model not found"):
        OnnxFeatureExtractor(tmp_path / "none.onnx")
    with pytest.raises(DataError, match=r"no output named 'pooled'; its outputs are \['output', 'feat'\]"):
        OnnxFeatureExtractor(office31_dslr[2], output="pooled")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.onnx: cannot load as an ONNX model"):
        OnnxFeatureExtractor(tmp_path / "bad.onnx")
    from adakit.errors import ConfigError
    from adakit.features import compute_features

    with pytest.raises(ConfigError, match=r"--image-size 160: the ONNX model .* takes 224×224 images"):
        compute_features(tmp_path / "nowhere", model=office31_dslr[2], image_size=160)  # before any image is read


@pytest.fixture
def tiny_images(tmp_path):
    """2 classes x 2 random 40x40 RGB images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_feature_file_notices_images_edited_in_place(tiny_images, tmp_path):
    """An image replaced or edited under the same name after the extraction (a crop, a re-export) kept its stale
    row silently: only images gone or added were noticed. Its size in bytes is recorded and compared."""
    from adakit.features import cache_features

    kw = {"backbone": "resnet18", "weights": None, "device": "cpu", "image_size": 32, "resize": 36,
          "show_progress": False}
    out, _ = cache_features(tiny_images, tmp_path / "f.npz", **kw)
    z = np.load(out)
    assert z["image_bytes"].tolist() == [(tiny_images / i).stat().st_size for i in z["ids"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_npz(out, "f")  # nothing changed: no warning
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tiny_images / "dog" / "1.png")
    with pytest.warns(UserWarning, match=r"f\.npz: 1 of 4 images changed since \(another size in bytes, e\.g\. "
                                         r".*dog/1\.png\); its features and labels are those of the folder"):
        load_npz(out, "f")


def test_an_out_file_written_by_another_run_meanwhile_is_not_replaced(tiny_images, tmp_path, monkeypatch):
    """Two `adakit features` runs with one --out and no --force both passed the 'exists' check before their
    extraction, and the second silently replaced the first's file (made, say, with another backbone)."""
    import adakit.features as features

    out = tmp_path / "f.npz"
    real = features.extract_features

    def other_run_finishes_first(*args, **kwargs):
        feat = real(*args, **kwargs)
        out.write_bytes(b"the other run's features")
        return feat

    monkeypatch.setattr(features, "extract_features", other_run_finishes_first)
    kw = {"backbone": "resnet18", "weights": None, "device": "cpu", "image_size": 32, "resize": 36,
          "show_progress": False}
    with pytest.raises(ConfigError, match=r"f\.npz was written by another process .* --force \(overwrite=True\)"):
        features.cache_features(tiny_images, out, **kw)
    assert out.read_bytes() == b"the other run's features" and [p.name for p in tmp_path.glob("f.npz*")] == ["f.npz"]
    assert features.cache_features(tiny_images, out, overwrite=True, **kw)[1] == (4, 512)
    assert np.load(out)["feat"].shape == (4, 512)


def test_a_feature_file_notices_its_image_list_edited(tiny_images, tmp_path):
    """A feature file made from an image list keeps the list's labels: a label corrected in the list afterwards left
    the old label in the features silently. The list is recorded by path and sha256 and a change is warned of."""
    from adakit.features import cache_features

    kw = {"backbone": "resnet18", "weights": None, "device": "cpu", "image_size": 32, "resize": 36,
          "show_progress": False}
    lst = tiny_images / "list.txt"
    lst.write_text("cat/0.png 0\ndog/1.png 0\n")
    out, _ = cache_features(lst, tmp_path / "l.npz", fmt="image_list", **kw)
    assert str(np.load(out)["image_list"]).startswith(f"{lst} (sha256 ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_npz(out, "l")
    lst.write_text("cat/0.png 0\ndog/1.png 1\n")  # a label corrected
    with pytest.warns(UserWarning, match=r"l\.npz: the image list .*list\.txt it was made from changed since "
                                         r"\(sha256 [0-9a-f]{12}, now [0-9a-f]{12}\); its rows and labels are those "
                                         "of the list"):
        load_npz(out, "l")
    lst.unlink()  # features used without their list: nothing to compare
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_npz(out, "l")


def test_features_with_a_torchvision_backbone_and_local_weights(tiny_images, tmp_path):
    import torchvision

    from adakit.config import DataConfig
    from adakit.data.images import load_image_folder

    ref = torchvision.models.resnet18(num_classes=7)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")  # with its own 7-class head, which is dropped
    out = tmp_path / "f.npz"
    res = CliRunner().invoke(app, ["features", str(tiny_images), "--out", str(out), "--backbone", "resnet18",
                                   "--weights", str(tmp_path / "r18.pth"), "--device", "cpu", "--image-size", "32",
                                   "--resize", "36", "--batch-size", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "4 images, 512-d features" in res.output
    got = np.load(out)
    assert list(got["classes"]) == ["cat", "dog"] and got["y"].tolist() == [0, 0, 1, 1]
    cfg = DataConfig(format="image_folder", source="tiny", target="tiny", image_size=32, resize=36)
    x = load_image_folder(tiny_images, "tiny", cfg=cfg).load(np.arange(4), train=False)
    ref.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = ref.eval()(x).numpy()
    np.testing.assert_allclose(got["feat"], expected, rtol=1e-4, atol=1e-5)


def test_features_with_a_timm_backbone(tiny_images, tmp_path):
    timm = pytest.importorskip("timm", reason="timm not installed")
    from adakit.features import cache_features

    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "t.pth")
    with pytest.warns(UserWarning, match="input mean"):
        path, shape = cache_features(tiny_images, tmp_path / "t.npz", backbone="timm/test_resnet",
                                     weights=str(tmp_path / "t.pth"), device="cpu", image_size=32, resize=36,
                                     show_progress=False)
    assert shape[0] == 4 and np.load(path)["feat"].shape == shape


def test_default_backbone_offline_says_which_weights_file_to_place_where(tiny_images, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    out = tmp_path / "x.npz"
    res = CliRunner().invoke(app, ["features", str(tiny_images), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth" in text
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-7ebf99e0.pth") in text.replace(" ", "")
    assert not out.exists()
    help_text = " ".join(CliRunner().invoke(app, ["features", "--help"]).output.split())
    assert "default MobileNetV2 with ImageNet weights" in help_text


def test_features_rejects_model_and_backbone_together(tiny_images, tmp_path):
    res = CliRunner().invoke(app, ["features", str(tiny_images), "--out", str(tmp_path / "x.npz"),
                                   "--model", str(tmp_path / "m.onnx"), "--backbone", "resnet18"])
    assert res.exit_code == 2 and "either --model" in res.output
    res = CliRunner().invoke(app, ["features", str(tiny_images), "--out", str(tmp_path / "x.npz"),
                                   "--backbone", "lenet"])
    assert res.exit_code == 2 and "needs an ImageNet-style image backbone" in res.output


def _export_script():
    import importlib.util
    from pathlib import Path

    pytest.importorskip("onnx", reason="onnx not installed (pip install onnx; the onnx and test extras)")
    path = Path(__file__).resolve().parents[1] / "scripts" / "export_onnx_features.py"
    spec = importlib.util.spec_from_file_location("export_onnx_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_script_regenerates_the_committed_feature_model(data_root, tmp_path):
    script = _export_script()
    zoo = data_root / "models" / "mobilenetv2-12-int8.onnx"
    committed = data_root / "models" / "mobilenetv2-12-int8_with_feat.onnx"
    if not zoo.is_file() or not committed.is_file():
        pytest.skip(f"{zoo} or {committed} not found")
    assert script.main([str(zoo), str(tmp_path / "with_feat.onnx")]) == 0
    assert (tmp_path / "with_feat.onnx").read_bytes() == committed.read_bytes()


def test_export_script_adds_the_pooled_features_of_a_small_model(tmp_path):
    script = _export_script()
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    conv_w, fc_w = rng.normal(size=(8, 3, 1, 1)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 5])],
                              [numpy_helper.from_array(conv_w, "cw"), numpy_helper.from_array(fc_w, "fw")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "tiny.onnx")
    assert script.main([str(tmp_path / "tiny.onnx"), str(tmp_path / "tiny_feat.onnx")]) == 0
    sess = ort.InferenceSession(str(tmp_path / "tiny_feat.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logits", "feat"] and sess.get_outputs()[1].shape == ["n", 8]
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    logits, feat = sess.run(None, {"x": x})
    expected = np.maximum(np.einsum("oc,nchw->nohw", conv_w[:, :, 0, 0], x), 0).mean(axis=(2, 3))
    np.testing.assert_allclose(feat, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, feat @ fc_w.T, rtol=1e-5, atol=1e-5)
    assert script.main([str(tmp_path / "tiny_feat.onnx"), str(tmp_path / "again.onnx")]) == 2  # 'feat' exists


def _pooling_onnx(path, input_shape, input_type: str = "FLOAT") -> None:
    """An ONNX model whose output ``feat`` (float32) is the per-channel mean of its input ``input`` of ``input_shape``
    and type ``input_type`` (a ``onnx.TensorProto`` name)."""
    pytest.importorskip("onnx", reason="onnx not installed (pip install onnx; the onnx and test extras)")
    from onnx import TensorProto, helper, save

    nodes = [helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["feat"])]
    graph = helper.make_graph(
        nodes, "pool", [helper.make_tensor_value_info("input", getattr(TensorProto, input_type), input_shape)],
        [helper.make_tensor_value_info("feat", TensorProto.FLOAT, [input_shape[0], input_shape[1]])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_an_onnx_model_of_a_fixed_batch_size_runs_in_chunks_of_it(tiny_images, tmp_path):
    """A model exported with a fixed batch dimension (torch.onnx.export of one sample gives batch 1) failed at the
    first batch (after every image was decoded) with onnxruntime's 'Got: 3 Expected: 1'; a fixed non-square input
    was taken as square and failed there too. Batches now run in chunks of the fixed size (the last one padded,
    the padding dropped); a non-square input is refused before any image is read."""
    from adakit.features import cache_features

    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    kw = {"resize": 36, "batch_size": 3, "show_progress": False}
    _pooling_onnx(tmp_path / "dynamic.onnx", ["n", 3, 32, 32])
    ref = cache_features(tiny_images, tmp_path / "ref.npz", model=tmp_path / "dynamic.onnx", **kw)[0]
    for fixed in (1, 2, 4):
        _pooling_onnx(tmp_path / f"b{fixed}.onnx", [fixed, 3, 32, 32])
        out = cache_features(tiny_images, tmp_path / f"b{fixed}.npz", model=tmp_path / f"b{fixed}.onnx", **kw)[0]
        np.testing.assert_allclose(np.load(out)["feat"], np.load(ref)["feat"], rtol=1e-6)
    assert np.load(ref)["feat"].shape == (4, 3) and np.ptp(np.load(ref)["feat"][:, 0]) > 0
    _pooling_onnx(tmp_path / "wide.onnx", ["n", 3, 32, 48])
    with pytest.raises(ConfigError, match=r"wide\.onnx: its input 'input' takes 32×48 \(height × width\) images, but "
                                          r"adakit feeds square centre crops"):
        cache_features(tiny_images, tmp_path / "w.npz", model=tmp_path / "wide.onnx", **kw)
    assert not (tmp_path / "w.npz").exists()


def test_an_onnx_model_of_another_input_type_or_channels_is_fed_or_refused_at_load(tiny_images, tmp_path):
    """A model taking float16, uint8 pixels or one channel failed at the first batch (after every image was
    checked) with onnxruntime's raw type or shape error. Its input is read at load: float16 (and float64) get the
    batches in their type; another type, or fixed channels other than 3 for image files (read as RGB), is a
    ConfigError naming the file, its input and what adakit feeds, before any image is read; grey arrays reach a
    1-channel model, RGB arrays are named at the first batch."""
    from adakit.features import cache_features, compute_features

    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    kw = {"resize": 36, "show_progress": False}
    _pooling_onnx(tmp_path / "f32.onnx", ["n", 3, 32, 32])
    _pooling_onnx(tmp_path / "f16.onnx", ["n", 3, 32, 32], "FLOAT16")
    ref = np.load(cache_features(tiny_images, tmp_path / "f32.npz", model=tmp_path / "f32.onnx", **kw)[0])["feat"]
    half = np.load(cache_features(tiny_images, tmp_path / "f16.npz", model=tmp_path / "f16.onnx", **kw)[0])["feat"]
    assert half.dtype == np.float32 and np.ptp(ref[:, 0]) > 0.01
    np.testing.assert_allclose(half, ref, atol=2e-3, rtol=0)  # the float16 rounding of the inputs, averaged

    _pooling_onnx(tmp_path / "u8.onnx", ["n", 3, 32, 32], "UINT8")
    with pytest.raises(ConfigError, match=r"u8\.onnx: its input 'input' of shape \(N, 3, 32, 32\), tensor\(uint8\), "
                                          r"but adakit feeds float32 images \(N, 3, H, W\) normalised"):
        compute_features(tmp_path / "nowhere", model=tmp_path / "u8.onnx", **kw)  # (no image folder: not read)
    _pooling_onnx(tmp_path / "grey.onnx", ["n", 1, 32, 32])
    for images in (tmp_path / "nowhere", [tmp_path / "nowhere.png"]):
        with pytest.raises(ConfigError, match=r"grey\.onnx: its input 'input' of shape \(N, 1, 32, 32\), "
                                              r"tensor\(float\), takes 1-channel images, but adakit reads image "
                                              r"files as RGB"):
            compute_features(images, model=tmp_path / "grey.onnx", **kw)
    with pytest.raises(ConfigError, match="takes 1-channel images"):
        cache_features(tiny_images, tmp_path / "g.npz", model=tmp_path / "grey.onnx", **kw)
    assert not (tmp_path / "g.npz").exists()
    grey = torch.rand(5, 1, 32, 32)
    np.testing.assert_allclose(compute_features(grey, model=tmp_path / "grey.onnx", batch_size=2),
                               grey.mean(dim=(2, 3)).numpy(), rtol=1e-5)
    with pytest.raises(DataError, match=r"images: a batch of shape \(2, 3, 32, 32\), but the ONNX model .*grey\.onnx "
                                        r"takes \(N, 1, H, W\)"):
        compute_features(torch.rand(2, 3, 32, 32), model=tmp_path / "grey.onnx")


def test_extract_features_checks_the_batch_shape_once(monkeypatch):
    """The batch-shape check ran on every batch; a domain's batches share its samples' shape: it runs on the first
    one, with the same errors."""
    from adakit import features

    calls = []
    check = features._check_first_batch
    monkeypatch.setattr(features, "_check_first_batch", lambda x, e: calls.append(tuple(x.shape)) or check(x, e))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    out = features.compute_features(torch.rand(7, 3, 8, 8), backbone=net, device="cpu", batch_size=3)
    assert out.shape == (7, 4) and calls == [(3, 3, 8, 8)]


def _resnet18_extractor() -> tuple[torch.nn.Module, dict]:
    """A seeded ResNet-18 without its classifier and the compute_features keywords the tests use with it."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5)
    net.fc = torch.nn.Identity()
    return net, {"backbone": net, "device": "cpu", "image_size": 32, "resize": 36, "batch_size": 3}


def test_compute_features_from_python_on_files_pil_images_arrays_and_your_module(tiny_images, tmp_path):
    """adakit.features.compute_features: the features as an array, from a folder, paths, PIL images, uint8
    arrays or a Dataset, with a backbone name or your own nn.Module (the CLI's cache_features took only a folder
    or list and a backbone name, and wrote a file)."""
    import torchvision

    from adakit.features import cache_features, compute_features

    net, kw = _resnet18_extractor()
    files = sorted(tiny_images.rglob("*.png"))
    from_folder = compute_features(tiny_images, **kw)
    assert from_folder.shape == (4, 512)
    np.testing.assert_allclose(compute_features(files, **kw), from_folder, rtol=1e-5, atol=1e-6)
    loose = tmp_path / "loose"  # images without class sub-folders, as the docstring promises (it refused them)
    loose.mkdir()
    for f in files:
        (loose / f"{f.parent.name}-{f.name}").write_bytes(f.read_bytes())
    np.testing.assert_allclose(compute_features(loose, **kw), from_folder, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compute_features([Image.open(f) for f in files], **kw), from_folder, rtol=1e-5,
                               atol=1e-6)
    T = torchvision.transforms
    geometry = T.Compose([T.Resize(36), T.CenterCrop(32)])
    u8 = np.stack([np.asarray(geometry(Image.open(f).convert("RGB"))).transpose(2, 0, 1) for f in files])
    np.testing.assert_allclose(compute_features(u8, **kw), from_folder, rtol=1e-4, atol=1e-5)  # normalised as files
    for wide in (u8.astype(np.int64), torch.from_numpy(u8).int()):  # 0..255 in another integer type: as uint8
        np.testing.assert_allclose(compute_features(wide, **kw), from_folder, rtol=1e-4, atol=1e-5)
    with pytest.raises(DataError, match=r"integer pixels from \d+ to \d+; give uint8 pixels"):
        compute_features(u8.astype(np.int64) * 4, **kw)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(compute_features(torch.utils.data.TensorDataset(x), **kw), net.eval()(x).numpy(),
                                   rtol=1e-4, atol=1e-5)
    # the named backbone with local weights gives what the command's file holds
    state = torchvision.models.resnet18(num_classes=7).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    path, _ = cache_features(tiny_images, tmp_path / "f.npz", backbone="resnet18", weights=str(tmp_path / "r18.pth"),
                             device="cpu", image_size=32, resize=36, show_progress=False)
    named = compute_features(tiny_images, backbone="resnet18", weights=str(tmp_path / "r18.pth"), device="cpu",
                             image_size=32, resize=36)
    np.testing.assert_allclose(np.load(path)["feat"], named, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="no such image folder or image-list file"):
        compute_features(tmp_path / "nope", **kw)
    net.train()
    one = compute_features(files[0], **kw)  # one image (path or PIL)
    np.testing.assert_allclose(one, from_folder[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compute_features(Image.open(files[0]), **kw), one, rtol=1e-5, atol=1e-6)
    assert net.training  # your module's mode is left as it was (it was left in eval mode)
    with pytest.raises(DataError, match="looks channels-last"):
        compute_features(u8.transpose(0, 2, 3, 1), **kw)


def test_compute_features_reads_datasets_of_pil_images_and_grey_arrays_as_image_files(tiny_images):
    """A Dataset of PIL images (torchvision's ImageFolder without a transform) was stacked as (N, H, W, 3) pixels
    and grey (N, 1, H, W) arrays reached an RGB model as one channel: both ended in a torch shape error. PIL items
    are read as image files are; grey images are repeated to 3 channels for a model that takes 3, as grey image
    files are, and stay one channel for a model that takes one."""
    import torchvision

    from adakit.features import compute_features

    net, kw = _resnet18_extractor()
    files = sorted(tiny_images.rglob("*.png"))
    from_files = compute_features(files, **kw)
    pil = torchvision.datasets.ImageFolder(str(tiny_images))  # items (PIL image, class index)
    np.testing.assert_allclose(compute_features(pil, **kw), from_files, rtol=1e-5, atol=1e-6)

    grey = np.random.default_rng(0).integers(0, 256, size=(2, 1, 32, 32)).astype(np.uint8)
    as_rgb = np.repeat(grey, 3, axis=1)
    np.testing.assert_allclose(compute_features(grey, **kw), compute_features(as_rgb, **kw), rtol=1e-5, atol=1e-6)
    grey_f = torch.rand(2, 1, 32, 32)
    np.testing.assert_allclose(compute_features(torch.utils.data.TensorDataset(grey_f), **kw),
                               compute_features(grey_f.repeat(1, 3, 1, 1), **kw), rtol=1e-5, atol=1e-6)
    one_channel = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    with torch.no_grad():
        np.testing.assert_allclose(compute_features(grey_f, backbone=one_channel, device="cpu"),
                                   one_channel(grey_f).reshape(2, 4).numpy(), rtol=1e-5, atol=1e-6)


def test_arrays_of_another_shape_than_rgb_images_are_named(tiny_images):
    """A grey array (N, H, W), one image (C, H, W) or RGBA (N, 4, H, W) reached the backbone and ended in torch's
    'expected 4D input' / 'expected input to have 3 channels' tracebacks; they are a DataError naming the shape and
    the fix, and the fix gives the features of the same images."""
    from adakit.features import compute_features

    kw = {"backbone": "resnet18", "weights": None, "device": "cpu", "image_size": 32}
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (2, 32, 32), dtype=np.uint8)
    rgba = rng.integers(0, 255, (2, 4, 32, 32), dtype=np.uint8)
    for x, shape in ((grey, r"\(2, 32, 32\)"), (rgba[0, :3], r"\(3, 32, 32\)"), (rgba, r"\(2, 4, 32, 32\)")):
        with pytest.raises(DataError, match=rf"images: a batch of shape {shape}, but resnet18 takes RGB images "
                                            r"\(N, 3, H, W\); give grey images \(N, H, W\) as x\[:, None\]"):
            compute_features(x, **kw)
    seeded = [torch.manual_seed(0) and compute_features(x, **kw) for x in (grey[:, None], grey[:, None].repeat(3, 1))]
    np.testing.assert_allclose(*seeded, rtol=1e-5, atol=1e-6)  # (weights=None: a random backbone, seeded)
    assert compute_features(rgba[:, :3], **kw).shape == (2, 512)


def test_an_unwritable_out_folder_is_named_before_any_image_is_read(tmp_path, monkeypatch):
    """An --out folder the user cannot write was found only after the whole extraction (a PermissionError
    traceback, or a clean error hours late). (As root every folder is writable, hence the stand-in.)"""
    import adakit.features as features

    monkeypatch.setattr(features.os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"--out .*x\.npz: the folder .* is not writable"):
        features.cache_features(tmp_path / "no-such-folder", tmp_path / "ro" / "x.npz", backbone="resnet18",
                                weights=None)


def test_an_existing_feature_file_is_replaced_only_with_overwrite(tmp_path):
    """A feature file of the same name (made another way, or with another backbone) is never replaced silently:
    the refusal comes before any image is read or any model loaded."""
    from adakit.features import cache_features

    out = tmp_path / "feats.npz"
    out.write_bytes(b"someone's features")
    with pytest.raises(ConfigError, match=r"feats\.npz exists: add --force \(overwrite=True\)"):
        cache_features(tmp_path / "no-such-folder", out, backbone="resnet18", weights=None)
    res = CliRunner().invoke(app, ["features", str(tmp_path / "no-such-folder"), "--out", str(out)])
    assert res.exit_code != 0 and "--force" in res.output
    assert out.read_bytes() == b"someone's features"
    with pytest.raises(ConfigError, match="is a folder"):
        cache_features(tmp_path, tmp_path, backbone="resnet18", weights=None, overwrite=True)
    # with overwrite the run goes on (here to the missing image folder)
    with pytest.raises(DataError, match="no such image folder"):
        cache_features(tmp_path / "no-such-folder", out, backbone="resnet18", weights=None, overwrite=True)
    with pytest.raises(DataError, match=r"feats\.npz is a file: give an image folder"):
        cache_features(out, tmp_path / "other.npz", backbone="resnet18", weights=None)
    # an --out below a file is refused before any work (it failed with a traceback after the extraction)
    with pytest.raises(ConfigError, match=r"feats\.npz is a file, not a folder"):
        cache_features(tmp_path / "no-such-folder", out / "x.npz", backbone="resnet18", weights=None)


def test_cache_features_writes_where_it_checked(tmp_path, monkeypatch):
    """``~`` in --out: the file is written to the expanded path that the overwrite check looked at (it was
    written to a literal ./~ folder, so a second call replaced it without asking)."""
    from adakit.features import cache_features

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "imgs"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        Image.fromarray(np.full((20, 20, 3), 60 if c == "a" else 200, np.uint8)).save(folder / c / "0.png")
    kw = {"backbone": "resnet18", "weights": None, "image_size": 32, "show_progress": False, "device": "cpu"}
    path, shape = cache_features(folder, "~/f.npz", **kw)
    assert path == tmp_path / "home" / "f.npz" and path.is_file() and shape[0] == 2
    assert not (tmp_path / "~").exists()
    with pytest.raises(ConfigError, match="exists"):
        cache_features(folder, "~/f.npz", **kw)


def test_features_of_a_flat_folder_make_an_unlabelled_target(tmp_path):
    """Unlabelled photos without class folders: their feature file has no class list and all labels unknown, and a
    run takes the source's classes for it (it was refused: 'holds images but no class sub-folders')."""
    from adakit.config import DataConfig
    from adakit.data import load_domains
    from adakit.features import cache_features

    (tmp_path / "photos").mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    path, shape = cache_features(tmp_path / "photos", tmp_path / "feats" / "photos.npz", backbone="resnet18",
                                 weights=None, image_size=32, show_progress=False, device="cpu")
    got = np.load(path)
    assert shape == (3, 512) and list(got["y"]) == [-1] * 3 and len(got["classes"]) == 0
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "feats" / "src.npz", feat=rng.normal(size=(4, 512)).astype(np.float32), y=[0, 1, 0, 1],
             classes=np.array(["cat", "dog"]))
    d = load_domains(DataConfig(format="npz", root=str(tmp_path / "feats"), source="src", target="photos"), seed=0)
    assert d.pool.classes == ["cat", "dog"] and len(d.pool) == 3
