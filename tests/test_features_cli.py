import shutil
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from adakit.cli import app
from adakit.data.features import load_npz
from adakit.errors import AdakitError, DataError

CLASSES = ("back_pack", "bike")
# measured on the committed features: max |difference| 0.0 over all 498 dslr images (same onnxruntime,
# same CPU kernels); the tolerance leaves room for other CPUs' int8 kernels
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
    assert set(got.files) == {"feat", "y", "classes", "ids", "image_root"}
    assert got["feat"].shape == (6, 1280) and got["feat"].dtype == np.float32
    np.testing.assert_allclose(got["feat"], ref["feat"][rows], atol=ATOL, rtol=0)
    assert list(got["classes"]) == list(CLASSES)
    np.testing.assert_array_equal(got["y"], [0, 0, 0, 1, 1, 1])
    assert got["ids"][0] == "back_pack/frame_0001.jpg"
    # the npz loader reads what the command wrote
    d = load_npz(out, "dslr")
    assert d.input_shape == (1280,) and d.classes == list(CLASSES) and len(d) == 6
    assert d.image_path(0) == str(folder.resolve() / "back_pack" / "frame_0001.jpg") and d.ids[0] == "dslr/0"


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
    res = CliRunner().invoke(app, ["features", str(folder), "--out", str(tmp_path / "x.npz"), "--quiet"])
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
