"""Feature files from elsewhere: label codings, the unlabelled marker, .mat variable names, standardisation."""

import numpy as np
import pytest
import scipy.io
from scipy.sparse import csc_matrix
from sklearn.datasets import dump_svmlight_file

from adakit.config import build_config
from adakit.data import load_domains
from adakit.data.features import load_mat, load_npz, load_svmlight
from adakit.errors import ConfigError, DataError


def _data(fmt: str, root, **extra):
    return build_config({"data": {"format": fmt, "root": str(root), "source": "src", "target": "tar", **extra}}).data


def _svm(path, y, d=3, seed=0):
    x = np.random.default_rng(seed).random((len(y), d))
    dump_svmlight_file(x, np.asarray(y, dtype=float), str(path))
    return x


def test_svmlight_minus_one_plus_one_is_two_classes(tmp_path):
    """Before: -1 was taken as 'unlabelled' and the source was rejected."""
    _svm(tmp_path / "src.svmlight", [-1, 1, 1, -1])
    _svm(tmp_path / "tar.svmlight", [1, -1, -1], seed=1)
    d = load_domains(_data("svmlight", tmp_path), seed=0)
    assert d.classes == ["-1", "1"] and d.pool.classes == ["-1", "1"]
    assert d.source.y.tolist() == [0, 1, 1, 0] and d.pool.y.tolist() == [1, 0, 0]


def test_one_coding_for_both_domains_from_the_union_of_codes(tmp_path):
    """Source codes {1,2,3}, target {2,3,5}: both domains get classes 1,2,3,5 (before: 1..C shifted per file)."""
    _svm(tmp_path / "src.svmlight", [1, 2, 3, 3])
    _svm(tmp_path / "tar.svmlight", [2, 3, 5], seed=1)
    d = load_domains(_data("svmlight", tmp_path), seed=0)
    assert d.source.classes == d.pool.classes == ["1", "2", "3", "5"]
    assert d.source.y.tolist() == [0, 1, 2, 2] and d.pool.y.tolist() == [1, 2, 3]


def test_label_values_fix_the_class_order_and_reject_unknown_codes(tmp_path):
    _svm(tmp_path / "src.svmlight", [0, 1, 2])
    _svm(tmp_path / "tar.svmlight", [2, 0], seed=1)
    d = load_domains(_data("svmlight", tmp_path, label_values=[2, 1, 0, 7]), seed=0)
    assert d.classes == ["2", "1", "0", "7"] and d.source.y.tolist() == [2, 1, 0] and d.pool.y.tolist() == [0, 2]
    with pytest.raises(DataError, match=r"src\.svmlight: label 2 \(row 2\) is not one of the class codes \[0, 1\]"):
        load_domains(_data("svmlight", tmp_path, label_values=[0, 1]), seed=0)
    with pytest.raises(ConfigError, match="lists a code more than once"):
        load_domains(_data("svmlight", tmp_path, label_values=[0, 0, 1, 2]), seed=0)


def test_unlabelled_marker_is_explicit(tmp_path):
    _svm(tmp_path / "src.svmlight", [1, 2, 2])
    _svm(tmp_path / "tar.svmlight", [0, 2, 0, 1], seed=1)  # 0 = no label known
    d = load_domains(_data("svmlight", tmp_path, unlabelled_value=0), seed=0)
    assert d.classes == ["1", "2"] and d.pool.y.tolist() == [-1, 1, -1, 0]
    with pytest.raises(DataError, match="source domain 'src' has unlabelled samples"):
        load_domains(_data("svmlight", tmp_path, unlabelled_value=2), seed=0)


def test_float_labels_must_be_whole_numbers(tmp_path):
    x = np.ones((3, 2))
    scipy.io.savemat(tmp_path / "ok.mat", {"X": x, "Y": np.array([[1.0], [2.0], [2.0]])})
    assert load_mat(tmp_path / "ok.mat", "ok").y.tolist() == [0, 1, 1]
    scipy.io.savemat(tmp_path / "bad.mat", {"X": x, "Y": np.array([[1.0], [2.7], [2.0]])})
    with pytest.raises(DataError, match=r"bad\.mat: label \(Y\) 2\.7 \(row 1\) is not an integer"):
        load_mat(tmp_path / "bad.mat", "bad")
    dump_svmlight_file(x, np.array([1.0, 2.5, 2.0]), str(tmp_path / "bad.svmlight"))
    with pytest.raises(DataError, match=r"bad\.svmlight: label 2\.5 \(row 1\) is not an integer"):
        load_svmlight(tmp_path / "bad.svmlight", "bad")


def test_npz_without_classes_holds_codes_and_with_classes_indices(tmp_path):
    np.savez(tmp_path / "c.npz", feat=np.ones((3, 2), np.float32), y=np.array([-1, 1, 1]))
    assert load_npz(tmp_path / "c.npz", "c").classes == ["-1", "1"]
    np.savez(tmp_path / "i.npz", feat=np.ones((3, 2), np.float32), y=np.array([-1, 1, 0]), classes=np.array(["a", "b"]))
    d = load_npz(tmp_path / "i.npz", "i")  # adakit's own format: -1 = unlabelled
    assert d.classes == ["a", "b"] and d.y.tolist() == [-1, 1, 0]


def test_mat_with_both_domains_and_named_variables(tmp_path):
    """The JDA layout: X_src (d, Ns), Y_src, X_tar, Y_tar in one file."""
    rng = np.random.default_rng(0)
    xs, xt = rng.random((4, 6)), rng.random((4, 5))
    scipy.io.savemat(tmp_path / "pair.mat", {"X_src": xs, "Y_src": np.arange(1, 7)[:, None] % 3 + 1,
                                             "X_tar": xt, "Y_tar": np.array([[3, 3, 1, 2, 1]])})
    cfg = _data("mat", tmp_path, pattern="{root}/pair.mat", feature_key="X_{domain}", label_key="Y_{domain}")
    d = load_domains(cfg, seed=0)
    assert d.source.x.shape == (6, 4) and d.pool.x.shape == (5, 4) and d.classes == ["1", "2", "3"]
    np.testing.assert_allclose(d.pool.x.numpy(), xt.T.astype(np.float32))
    assert d.pool.y.tolist() == [2, 2, 0, 1, 0]
    # bag-of-words features are often saved sparse: read as the dense matrix
    sparse = {"X_src": csc_matrix(xs), "Y_src": np.arange(1, 7)[:, None] % 3 + 1, "X_tar": csc_matrix(xt),
              "Y_tar": np.array([[3, 3, 1, 2, 1]])}
    scipy.io.savemat(tmp_path / "pair.mat", sparse)
    np.testing.assert_allclose(load_domains(cfg, seed=0).pool.x.numpy(), xt.T.astype(np.float32))
    with pytest.raises(DataError, match=r"pair\.mat: no variable 'feat_src' \(data\.feature_key='feat_\{domain\}', "
                                        r"domain 'src'\); the file holds \['X_src', 'Y_src', 'X_tar', 'Y_tar'\]"):
        load_domains(cfg.model_copy(update={"feature_key": "feat_{domain}"}), seed=0)
    with pytest.raises(DataError, match=r"no label variable among the usual names.*data\.label_key"):
        load_domains(cfg.model_copy(update={"label_key": None}), seed=0)
    with pytest.raises(ConfigError, match=r"data\.label_key='Y_\{dom\}': only \{domain\} may appear"):
        load_domains(cfg.model_copy(update={"label_key": "Y_{dom}"}), seed=0)
    # a square matrix (d == N) cannot be told (N, d) from (d, N): read as rows, with a warning naming the variable
    scipy.io.savemat(tmp_path / "pair.mat", {"X_src": xs[:, :4], "Y_src": np.array([[1, 2, 3, 1]]), "X_tar": xt,
                                             "Y_tar": np.array([[3, 3, 1, 2, 1]])})
    with pytest.warns(UserWarning, match=r"pair\.mat: X_src is square \(4×4\): read as one row per sample"):
        d = load_domains(cfg, seed=0)
    np.testing.assert_allclose(d.source.x.numpy(), xs[:, :4].astype(np.float32))


def test_real_jda_digit_pair(data_root):
    path = data_root / "digits" / "MNIST_vs_USPS.mat"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    cfg = _data("mat", data_root / "digits", pattern="{root}/MNIST_vs_USPS.mat", feature_key="X_{domain}",
                label_key="Y_{domain}")
    d = load_domains(cfg, seed=0)
    assert d.source.x.shape == (2000, 256) and d.pool.x.shape == (1800, 256)
    assert d.classes == [str(c) for c in range(1, 11)] and d.source.has_labels and d.pool.has_labels


def test_standardize_uses_source_statistics(tmp_path):
    rng = np.random.default_rng(0)
    xs = _svm(tmp_path / "src.svmlight", [0, 1] * 10, d=3)
    _svm(tmp_path / "tar.svmlight", [0, 1, 1], d=3, seed=1)
    d = load_domains(_data("svmlight", tmp_path, standardize=True), seed=rng.integers(10))
    np.testing.assert_allclose(d.source.x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(d.source.x.std(0).numpy(), 1, atol=1e-5)
    raw = load_domains(_data("svmlight", tmp_path), seed=0).pool.x.numpy()
    expected = (raw - xs.mean(0)) / xs.std(0, ddof=1)
    np.testing.assert_allclose(d.pool.x.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_standardize_leaves_a_dimension_constant_on_the_source_unscaled(tmp_path):
    """A feature that is 0 on every source row (a border pixel, a dead unit) is centred only: dividing by its ~0
    standard deviation used to turn a target value of 1 into 1e6."""
    np.savez(tmp_path / "s.npz", feat=np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0]], np.float32), y=[0, 1, 0],
             classes=["a", "b"])
    np.savez(tmp_path / "t.npz", feat=np.array([[1.0, 2.0], [0.5, 4.0]], np.float32), y=[0, 1], classes=["a", "b"])
    d = load_domains(_data("npz", tmp_path, source="s", target="t", standardize=True), seed=0)
    np.testing.assert_allclose(d.pool.x[:, 0].numpy(), [1.0, 0.5])  # centred (mean 0), not divided
    np.testing.assert_allclose(d.pool.x[:, 1].numpy(), [0.0, 2.0], atol=1e-6)  # (x − 2) / 1
    np.testing.assert_allclose(d.source.standardized_with[1].numpy(), [1.0, 1.0])


def test_svmlight_source_and_target_are_read_together(tmp_path):
    """The target never uses feature 5 and no file uses index 0: both still get width 5 and one-based columns."""
    from adakit.config import DataConfig
    from adakit.data import load_domains

    (tmp_path / "src.svmlight").write_text("1 1:0.5 5:1.0\n2 2:1.0 3:0.5\n1 1:0.2 5:0.3\n2 2:0.1\n")
    (tmp_path / "tgt.svmlight").write_text("1 1:0.4\n2 2:0.9 3:0.1\n")
    d = load_domains(DataConfig(format="svmlight", root=str(tmp_path), source="src", target="tgt"), 0)
    assert tuple(d.source.x.shape) == (4, 5) and tuple(d.pool.x.shape) == (2, 5)
    np.testing.assert_allclose(d.pool.x.numpy(), [[0.4, 0, 0, 0, 0], [0, 0.9, 0.1, 0, 0]], rtol=1e-6)
    from adakit.data.features import svmlight_indexing

    assert svmlight_indexing(DataConfig(format="svmlight", root=str(tmp_path), source="src", target="tgt")) is False


def test_svmlight_pair_is_parsed_once_per_run_load(tmp_path, monkeypatch):
    """Source, target, their label codes and the recorded indexing read the files once, and again after an edit."""
    import sklearn.datasets

    from adakit.config import DataConfig
    from adakit.data import load_domains
    from adakit.data.features import svmlight_indexing

    calls = []
    real = sklearn.datasets.load_svmlight_files
    monkeypatch.setattr(sklearn.datasets, "load_svmlight_files", lambda f, **k: calls.append(f) or real(f, **k))
    _svm(tmp_path / "src.svmlight", [0, 1, 2] * 4, d=4)
    _svm(tmp_path / "tar.svmlight", [2, 1, 0], d=4, seed=1)
    cfg = DataConfig(format="svmlight", root=str(tmp_path / "."), source="src", target="tar")
    d = load_domains(cfg, 0)
    assert svmlight_indexing(cfg) is True and len(d.pool) == 3
    assert len(calls) == 1 and len(calls[0]) == 2
    _svm(tmp_path / "tar.svmlight", [2, 1, 0, 0], d=4, seed=2)  # the file changed: read again
    assert len(load_domains(cfg, 0).pool) == 4 and len(calls) == 2


def test_svmlight_errors_name_the_file_at_fault(tmp_path):
    from adakit.config import DataConfig
    from adakit.data import load_domains

    (tmp_path / "src.svmlight").write_text("1 1:0.5 3:1\n0 2:0.5\n")  # indices from 1
    (tmp_path / "tar.svmlight").write_text("1 1:0.5\n0 2:x\n")
    cfg = DataConfig(format="svmlight", root=str(tmp_path), source="src", target="tar")
    with pytest.raises(DataError, match=r"tar\.svmlight: not a valid svmlight file"):
        load_domains(cfg, 0)
    (tmp_path / "tar.svmlight").write_text("1 0:0.5\n0 2:1\n")
    with pytest.raises(DataError, match=r"tar\.svmlight: feature index 0 appears, but data.zero_based is false"):
        load_domains(cfg.model_copy(update={"zero_based": False}), 0)


def test_features_that_are_not_real_numbers_and_ambiguous_mat_variables_are_named(tmp_path):
    """Complex features lost their imaginary part silently; a .mat with several usual names took the first;
    labels beyond int64 wrapped around."""
    import scipy.io

    x = np.random.default_rng(0).normal(size=(6, 3))
    np.savez(tmp_path / "c.npz", feat=x * 1j, y=np.arange(6) % 2)
    with pytest.raises(DataError, match=r"c\.npz: feat holds complex numbers; features must be real numbers"):
        load_npz(tmp_path / "c.npz", "c")
    np.savez(tmp_path / "b.npz", feat=x > 0, y=np.arange(6) % 2)  # yes/no features (a bag of words) are 1/0
    assert set(load_npz(tmp_path / "b.npz", "b").x.unique().tolist()) <= {0.0, 1.0}
    np.savez(tmp_path / "u.npz", feat=x, y=np.array([0, 1, 0, 1, 0, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(DataError, match=r"u\.npz: label .* is beyond 64-bit integers"):
        load_npz(tmp_path / "u.npz", "u")
    scipy.io.savemat(tmp_path / "m.mat", {"X": x, "feat": x[:, :2], "y": np.arange(6) % 2})
    with pytest.raises(DataError, match=r"m\.mat: several variables could be the features \(feat, X\); name the "
                                        r"one to use with data.feature_key"):
        load_mat(tmp_path / "m.mat", "m")


def test_a_source_of_one_class_is_refused_though_the_target_brings_more(tmp_path):
    """The class list is the union of the source's and the target's codes, so a source of one class passed the
    "at least 2 classes" check and trained a model that can never learn the others."""
    from adakit.data import load_domains

    x = np.random.default_rng(0).normal(size=(6, 3))
    np.savez(tmp_path / "src.npz", feat=x, y=np.zeros(6, dtype=int))
    np.savez(tmp_path / "tar.npz", feat=x, y=np.arange(6) % 3)
    with pytest.raises(DataError, match=r"source domain 'src' has samples of 1 class \('0'\) of the 3 in the class "
                                        r"list"):
        load_domains(_data("npz", tmp_path), seed=0)


def test_a_stray_huge_svmlight_index_is_named_before_the_rows_are_made_dense(tmp_path):
    from adakit.data import load_domains

    (tmp_path / "src.svmlight").write_text("".join(f"{i % 2} 1:0.5 2:1\n" for i in range(1000)) + "1 900000000:0.5\n")
    (tmp_path / "tar.svmlight").write_text("0 1:0.5\n1 2:1\n")
    with pytest.raises(DataError, match=r"src\.svmlight: 1,001 rows as wide as the largest feature index "
                                        r"\(900,000,000, in src\.svmlight\) would take 3,35\d GiB .*is index "
                                        r"900000000 a mistake"):
        load_domains(_data("svmlight", tmp_path), seed=0)


def test_a_coded_npz_with_an_npz_that_stores_classes_takes_its_class_names_not_its_indices(tmp_path):
    """The other file's y were read as codes though an .npz with classes holds indices (-1 = unlabelled): class
    '-1' appeared with unlabelled photos, and class '0' with classes '1', '2', '3' (y 0..2)."""
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.savez(tmp_path / "src.npz", feat=x, y=np.array([1, 2, 1, 2, 1, 2]))  # codes, no classes
    np.savez(tmp_path / "photos.npz", feat=x[:4], y=np.full(4, -1), classes=np.array([], dtype=str))
    d = load_domains(_data("npz", tmp_path, target="photos"), seed=0)
    assert d.classes == d.pool.classes == ["1", "2"] and d.source.y.tolist() == [0, 1, 0, 1, 0, 1]
    np.savez(tmp_path / "src.npz", feat=x, y=np.array([1, 2, 3, 1, 2, 3]))
    np.savez(tmp_path / "named.npz", feat=x[:3], y=np.array([2, 0, 1]), classes=np.array(["1", "2", "3"]))
    d = load_domains(_data("npz", tmp_path, target="named"), seed=0)
    assert d.classes == ["1", "2", "3"] and d.source.y.tolist() == [0, 1, 2, 0, 1, 2] and d.pool.y.tolist() == [2, 0, 1]
    np.savez(tmp_path / "words.npz", feat=x[:3], y=np.array([1, 0, 1]), classes=np.array(["cat", "dog"]))
    with pytest.raises(DataError, match=r"words\.npz: its classes are names \(cat, dog\), but the other domain's "
                                        r"file holds integer label codes"):
        load_domains(_data("npz", tmp_path, target="words"), seed=0)



def test_an_unlabelled_npz_target_takes_the_class_names_of_a_source_saved_with_classes(tmp_path):
    """A target .npz without classes whose y is all data.unlabelled_value (the README's and the missing-y error's
    recipe for an unlabelled target) beside a source saved with classes=names was refused: 'its classes are names,
    but the other domain's file holds integer label codes'. It has no codes to match, so it takes the source's names;
    a target with any other code is still refused, and the error says how to mark an unlabelled target."""
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.savez(tmp_path / "src.npz", feat=x, y=np.array([0, 1, 2, 0, 1, 2]), classes=np.array(["mug", "cat", "pen"]))
    np.savez(tmp_path / "tar.npz", feat=x[:4], y=np.full(4, -1))
    d = load_domains(_data("npz", tmp_path, unlabelled_value=-1), seed=0)
    assert d.classes == d.pool.classes == ["mug", "cat", "pen"]
    assert d.pool.y.tolist() == [-1] * 4 and d.source.y.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(DataError, match=r"src\.npz: its classes are names .*data\.unlabelled_value set to its code"):
        load_domains(_data("npz", tmp_path), seed=0)  # without the setting, -1 is a code
    np.savez(tmp_path / "tar.npz", feat=x[:4], y=np.array([-1, -1, 2, -1]))  # a code: cannot be matched with names
    with pytest.raises(DataError, match=r"its classes are names"):
        load_domains(_data("npz", tmp_path, unlabelled_value=-1), seed=0)

def test_a_npy_csv_or_mat_file_read_as_npz_says_what_to_do(tmp_path):
    """A .npy gave a raw TypeError (an array is no context manager); a .csv or .mat numpy's allow_pickle advice."""
    from adakit.data.features import read_feature_rows

    np.save(tmp_path / "f.npy", np.ones((3, 2)))
    for read in (lambda p: load_npz(p, "f"), lambda p: read_feature_rows("npz", p)):
        with pytest.raises(DataError, match=r"f\.npy: a \.npy holds one array; save feat and y with np\.savez"):
            read(tmp_path / "f.npy")
    (tmp_path / "f.csv").write_text("1,2,0\n3,4,1\n")
    scipy.io.savemat(tmp_path / "f.mat", {"X": np.ones((3, 2)), "Y": np.arange(3)})
    for name in ("f.csv", "f.mat"):
        with pytest.raises(DataError, match=rf"{name}: cannot read as \.npz: not an \.npz file .*np\.savez\(path, "
                                            r"feat=feat, y=y\)") as err:
            load_npz(tmp_path / name, "f")
        assert "allow_pickle" not in str(err.value)


def test_finite_values_beyond_float32_are_named_as_such_not_as_nan_or_inf(tmp_path):
    """1e300 became inf in float32 and was reported as 'NaN or inf values'."""
    from adakit.data.features import read_feature_rows

    x = np.ones((4, 2))
    x[2, 1] = -1e300
    np.savez(tmp_path / "big.npz", feat=x, y=[0, 1, 0, 1])
    scipy.io.savemat(tmp_path / "big.mat", {"X": x, "Y": np.arange(4) % 2})
    dump_svmlight_file(x, np.arange(4) % 2, str(tmp_path / "big.svmlight"))
    for name, read in (("big.npz", load_npz), ("big.mat", load_mat), ("big.svmlight", load_svmlight)):
        with pytest.raises(DataError, match=rf"{name}: .*1 value\(s\) beyond float32's range \(±3\.4e38\), e\.g\. "
                                            r"-1e\+300, .*rescale the features"):
            read(tmp_path / name, "big")
    with pytest.raises(DataError, match=r"big\.svmlight: .*beyond float32's range"):
        read_feature_rows("svmlight", tmp_path / "big.svmlight", zero_based=True)


def test_svmlight_index_beyond_32_bits_empty_feature_rows_and_unlabelled_files_say_what_to_do(tmp_path):
    """An index above 2^31 raised a bare OverflowError; an .npz whose feat is (N, 0) was taken; a .mat without a
    label variable or an svmlight file without labels did not say how to give an unlabelled target."""
    from adakit.data.features import read_feature_rows

    (tmp_path / "big.svmlight").write_text("1 1:0.5 3000000000:1\n0 2:0.5\n")
    (tmp_path / "tar.svmlight").write_text("1 1:0.5\n0 2:0.5\n")
    big = r"big\.svmlight: not a valid svmlight file \(OverflowError: .*\); a feature index .*beyond 2,147,483,647"
    with pytest.raises(DataError, match=big):
        load_domains(_data("svmlight", tmp_path, source="big"), seed=0)
    with pytest.raises(DataError, match=big):
        read_feature_rows("svmlight", tmp_path / "big.svmlight", zero_based=False)
    np.savez(tmp_path / "w.npz", feat=np.ones((3, 0)), y=[0, 1, 0])
    with pytest.raises(DataError, match=r"w\.npz: the features have no columns \(shape \(3, 0\)\)"):
        load_npz(tmp_path / "w.npz", "w")
    unlabelled = r"A domain without labels still needs .*set data\.unlabelled_value to it"
    scipy.io.savemat(tmp_path / "nolabel.mat", {"X": np.ones((3, 2))})
    with pytest.raises(DataError, match=r"nolabel\.mat: no label variable .*data\.label_key.*" + unlabelled):
        load_mat(tmp_path / "nolabel.mat", "nolabel")
    (tmp_path / "nolabel.svmlight").write_text("1:0.5 2:1\n2:0.5\n")
    with pytest.raises(DataError, match=r"nolabel\.svmlight: .*every line starts with its label.*" + unlabelled):
        load_svmlight(tmp_path / "nolabel.svmlight", "nolabel")
