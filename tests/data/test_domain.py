import numpy as np
import pytest
import torch

from adakit.config import build_config
from adakit.data import load_domain, load_domains, split_target
from adakit.data.demo import shift
from adakit.data.domain import TensorDomain, check_same_classes
from adakit.data.features import load_mat, load_npz, load_svmlight
from adakit.errors import DataError


def _domain(n=6, classes=("a", "b"), name="d", y=None, x=None):
    y = np.arange(n) % len(classes) if y is None else y
    x = torch.randn(n, 3) if x is None else x
    return TensorDomain(name=name, classes=list(classes), ids=[f"{name}/{i}" for i in range(n)], y=y, x=x)


def test_label_outside_class_list_names_sample():
    with pytest.raises(DataError, match=r"'d/2' has label 5, outside the class list"):
        _domain(y=np.array([0, 1, 5, 0, 1, 0]))


def test_nan_features_name_rows():
    x = torch.randn(6, 3)
    x[4, 1] = float("nan")
    with pytest.raises(DataError, match=r"NaN or inf values in rows \[4\]"):
        _domain(x=x)


def test_class_lists_must_match():
    with pytest.raises(DataError, match=r"only in 'src': \['c'\]"):
        check_same_classes(_domain(classes=("a", "c"), name="src"), _domain(classes=("a", "b"), name="tgt"))
    with pytest.raises(DataError, match="different order"):
        check_same_classes(_domain(classes=("a", "b")), _domain(classes=("b", "a")))


def test_npz_roundtrip_and_errors(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, feat=np.ones((4, 2), np.float32), y=np.array([0, 1, 0, 1]), classes=np.array(["x", "y"]))
    d = load_npz(p, "s")
    assert d.classes == ["x", "y"] and d.x.shape == (4, 2) and list(d.ids) == ["s/0", "s/1", "s/2", "s/3"]
    with pytest.raises(DataError, match="feature file not found"):
        load_npz(tmp_path / "missing.npz", "m")
    np.savez(tmp_path / "bad.npz", features=np.ones((2, 2)))
    with pytest.raises(DataError, match=r"missing arrays \['feat', 'y'\]"):
        load_npz(tmp_path / "bad.npz", "b")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_npz(tmp_path / "junk.npz", "j")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04garbage")  # a zip's magic bytes, then nothing: BadZipFile
    with pytest.raises(DataError, match=r"broken.npz: cannot read as .npz \(BadZipFile"):
        load_npz(tmp_path / "broken.npz", "b")
    np.savez(tmp_path / "short.npz", feat=np.ones((4, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="short.npz: 4 feature rows but 3 labels"):
        load_npz(tmp_path / "short.npz", "s")
    np.savez(tmp_path / "nolabels.npz", feat=np.ones((4, 2)))
    with pytest.raises(DataError, match=r"missing arrays \['y'\].*set data.unlabelled_value"):
        load_npz(tmp_path / "nolabels.npz", "n")


def test_mat_and_svmlight(tmp_path):
    import scipy.io
    from sklearn.datasets import dump_svmlight_file

    x = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    y = np.array([1, 2, 1, 2, 2])
    scipy.io.savemat(tmp_path / "a.mat", {"fts": x.T, "labels": y})  # stored d x N, labels 1-based
    d = load_mat(tmp_path / "a.mat", "a")
    assert d.x.shape == (5, 3) and d.y.tolist() == [0, 1, 0, 1, 1]
    dump_svmlight_file(x, y, str(tmp_path / "a.svmlight"))
    d = load_svmlight(tmp_path / "a.svmlight", "a")
    np.testing.assert_allclose(d.x.numpy(), x, rtol=1e-6)
    assert d.y.tolist() == [0, 1, 0, 1, 1]

    # files that scipy cannot parse are DataErrors naming the file (scipy raises ValueError, IndexError,
    # MatReadError, NotImplementedError, ... depending on the damage)
    (tmp_path / "cut.mat").write_bytes(b"")
    with pytest.raises(DataError, match=r"cut.mat: cannot read as .mat \(MatReadError"):
        load_mat(tmp_path / "cut.mat", "c")
    header = b"MATLAB 7.3 MAT-file, HDF5 schema 1.00 .".ljust(116) + b"\0" * 8 + b"\x00\x02IM"
    (tmp_path / "v73.mat").write_bytes(header + b"\x89HDF\r\n\x1a\n" + b"\0" * 600)
    with pytest.raises(DataError, match=r"v73.mat: cannot read .*MATLAB v7.3 files are HDF5: save them with"):
        load_mat(tmp_path / "v73.mat", "v")
    scipy.io.savemat(tmp_path / "text.mat", {"fts": np.array([["a", "b"]]), "labels": np.array([1, 2])})
    with pytest.raises(DataError, match="text.mat: fts holds text; features must be real numbers"):
        load_mat(tmp_path / "text.mat", "t")


def test_demo_shift_is_deterministic_and_real():
    src = load_domain("demo", "digits", None)
    tgt = load_domain("demo", "digits-shifted", None)
    assert len(src) == 899 and len(tgt) == 898 and src.classes == tgt.classes
    img = np.zeros((1, 8, 8), np.float32)
    img[0, 2:6, 4] = 16
    out = shift(img)
    assert out.shape == (1, 8, 8) and out[0, 0, 0] == 16 and out.min() < 8  # inverted, stroke still there
    np.testing.assert_array_equal(load_domain("demo", "digits-shifted", None).x, tgt.x)


def test_inductive_split_is_disjoint_stratified_seeded():
    d = _domain(n=40, classes=("a", "b"))
    pool, test = split_target(d, 0.5, seed=3)
    assert len(pool) == len(test) == 20 and not set(pool.ids) & set(test.ids)
    assert np.bincount(pool.y).tolist() == [10, 10]
    assert list(split_target(d, 0.5, seed=3)[0].ids) == list(pool.ids)
    # a class without samples (an empty class folder) does not stop the stratification; one with a single does
    e = TensorDomain(name="t", classes=["a", "b", "c"], ids=np.arange(20).astype(str),
                     y=np.r_[np.zeros(10, int), np.full(10, 2)], x=torch.zeros(20, 2))
    for seed in range(5):
        assert np.bincount(split_target(e, 0.5, seed=seed)[0].y, minlength=3).tolist() == [5, 0, 5]
    e.y[0] = 1
    with pytest.warns(UserWarning, match=r"class\(es\) \['b'\] of target 't' have one sample"):
        split_target(e, 0.5, seed=0)


def test_missing_data_root_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAKIT_DATA", str(tmp_path / "nowhere"))
    cfg = build_config({"data": {"format": "npz", "source": "amazon", "target": "webcam"}})
    with pytest.raises(DataError, match="Set ADAKIT_DATA"):
        load_domains(cfg.data, 0)


def test_a_pattern_without_root_needs_no_data_root(monkeypatch, tmp_path):
    """The README's `data.pattern: feats/{domain}.npz` (files `adakit features` wrote) stopped with 'data root not
    found: ADAKIT_DATA is not set' though the pattern never uses {root}; the data root is needed only by a pattern
    (or the format's default pattern) that does. A relative pattern is read from the folder adakit runs in."""
    monkeypatch.delenv("ADAKIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "feats").mkdir()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "feats" / "src.npz", feat=rng.normal(size=(6, 3)), y=np.arange(6) % 2, classes=["a", "b"])
    np.savez(tmp_path / "feats" / "tar.npz", feat=rng.normal(size=(4, 3)), y=np.full(4, -1))  # reads src's classes
    cfg = build_config({"data": {"format": "npz", "pattern": "feats/{domain}.npz", "source": "src", "target": "tar",
                                 "unlabelled_value": -1}})
    d = load_domains(cfg.data, 0)
    assert len(d.source) == 6 and len(d.pool) == 4 and d.classes == ["a", "b"]
    cfg = build_config({"data": {"format": "npz", "pattern": "{root}/feats/{domain}.npz", "source": "src",
                                 "target": "tar"}})
    with pytest.raises(DataError, match="Set ADAKIT_DATA"):  # a pattern with {root} still needs one
        load_domains(cfg.data, 0)


def test_office31_features(office31_features):
    cfg = build_config({"data": {"format": "npz", "root": str(office31_features), "source": "amazon",
                                 "target": "webcam", "protocol": "inductive"}})
    d = load_domains(cfg.data, 0)
    assert len(d.source) == 2817 and len(d.pool) + len(d.test) == 795 and len(d.classes) == 31
    assert d.source.x.shape[1] == 1280


def test_class_lists_that_differ_say_how_to_fix():
    def dom(name, classes):
        return TensorDomain(name=name, classes=classes, ids=["0", "1"], y=np.array([0, 1]), x=torch.zeros(2, 2))

    with pytest.raises(DataError, match="differ only in case or Unicode form: 'Cat' / 'cat'; rename one"):
        check_same_classes(dom("s", ["Cat", "dog"]), dom("t", ["cat", "dog"]))
    with pytest.raises(DataError, match="differ only in case or Unicode form"):
        check_same_classes(dom("s", ["caf\u00e9", "x"]), dom("t", ["cafe\u0301", "x"]))  # NFC vs NFD
    with pytest.raises(DataError, match="still needs its entry there: an empty class folder, or a classes.txt"):
        check_same_classes(dom("s", ["a", "b", "c"]), dom("t", ["a", "b"]))
