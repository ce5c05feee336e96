import gzip

import numpy as np
import pytest
import torch

from adakit.config import DataConfig
from adakit.data import load_domains
from adakit.data.digits import load_digits, to_shape
from adakit.data.domain import TensorDomain
from adakit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits(data_root):
    p = data_root / "digits"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="module")
def mnist_usps(digits):
    cfg = DataConfig(format="digits", root=str(digits.parent), source="mnist", target="usps")
    return load_domains(cfg, seed=0)


@pytest.fixture(scope="module")
def mnist_mnistm(digits):
    cfg = DataConfig(format="digits", root=str(digits.parent), source="mnist", target="mnistm")
    return load_domains(cfg, seed=0)


def test_mnist_usps_pair_is_1x28x28(mnist_usps):
    s, t = mnist_usps.source, mnist_usps.pool
    assert isinstance(s, TensorDomain) and isinstance(t, TensorDomain)
    assert (len(s), len(t)) == (10_000, 7_291 + 2_007)
    assert s.input_shape == t.input_shape == (1, 28, 28)
    assert s.classes == t.classes == [str(d) for d in range(10)]
    assert s.x.dtype == torch.uint8 and t.x.dtype == torch.uint8
    np.testing.assert_array_equal(np.bincount(s.y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert np.bincount(t.y, minlength=10).min() > 0 and t.y.max() == 9
    x = t.load(np.array([0, 9297]))
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert t.ids[0] == "usps/train/0" and t.ids[-1] == "usps/test/2006"
    assert s.ids[0] == "mnist/t10k/0"


def test_usps_values_mapped_from_minus_one_one(digits):
    # native 16x16: pixels equal round((v + 1) / 2 * 255) of the text file
    cfg = DataConfig(format="digits", source="usps", target="usps", image_size=16)
    d = load_digits(digits.parent, "usps-test", cfg=cfg)
    first = gzip.open(digits / "zip.test.gz", "rt").readline().split()
    v = np.array(first[1:], dtype=np.float32)
    np.testing.assert_array_equal(d.x[0, 0].numpy().ravel(), np.round((v + 1) / 2 * 255).astype(np.uint8))
    assert d.y[0] == int(float(first[0])) and len(d) == 2_007


def test_mnist_mnistm_pair_is_3x32x32(mnist_mnistm):
    s, t = mnist_mnistm.source, mnist_mnistm.pool
    assert s.input_shape == t.input_shape == (3, 32, 32)
    assert (len(s), len(t)) == (10_000, 9_001)
    # MNIST-M's labels are MNIST t10k[:9001] (data README)
    np.testing.assert_array_equal(t.y, s.y[:9001])
    # grey digits replicated to 3 channels
    assert torch.equal(s.x[:, 0], s.x[:, 1]) and torch.equal(s.x[:, 0], s.x[:, 2])
    assert not torch.equal(t.x[:, 0], t.x[:, 1])
    x = t.load(np.arange(4))
    assert x.shape == (4, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_channels_and_size_override(digits):
    cfg = DataConfig(format="digits", source="mnistm", target="mnist", channels=1)
    d = load_digits(digits.parent, "mnistm", cfg=cfg)
    assert d.input_shape == (1, 32, 32)


def test_to_shape_hand_cases():
    x = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4) * 10
    same = to_shape(x, 1, 4)
    np.testing.assert_array_equal(same, x)
    rgb = to_shape(x, 3, 4)
    assert rgb.shape == (1, 3, 4, 4) and (rgb == x).all()
    grey = to_shape(np.stack([np.full((4, 4), v, np.uint8) for v in (100, 200, 50)])[None], 1, 2)
    np.testing.assert_array_equal(grey, np.full((1, 1, 2, 2), round(0.299 * 100 + 0.587 * 200 + 0.114 * 50)))
    up = to_shape(np.full((2, 1, 16, 16), 77, np.uint8), 1, 28)  # constant image stays constant
    assert up.shape == (2, 1, 28, 28) and (up == 77).all()


def test_errors(tmp_path, digits):
    with pytest.raises(ConfigError, match="unknown digits domain 'svhn'.*mnist, mnist-train, usps"):
        load_digits(digits.parent, "svhn")
    with pytest.raises(DataError, match="digits file not found: .*t10k-images-idx3-ubyte.gz"):
        load_digits(tmp_path, "mnist")
    (tmp_path / "zip.test.gz").write_bytes(gzip.compress(b"1.0 0.5 0.5\n"))
    with pytest.raises(DataError, match="zip.test.gz: expected 257 numbers per line"):
        load_digits(tmp_path, "usps-test")
    (tmp_path / "zip.test.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="zip.test.gz: not a USPS text file"):
        load_digits(tmp_path, "usps-test")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b""))  # an interrupted download
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: too short for an idx file \(0 bytes"):
        load_digits(tmp_path, "mnist")
