import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adakit.config import DataConfig
from adakit.data import load_domain, load_domains
from adakit.data.images import FileImageDomain, load_image_folder, load_image_list
from adakit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from adakit.errors import ConfigError, DataError

PATTERN = "{root}/office31/images/{domain}/images"


@pytest.fixture(scope="module")
def office31(data_root) -> Path:
    p = data_root / "office31" / "images"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="module")
def dslr(office31) -> FileImageDomain:
    return load_domain("image_folder", "dslr", str(office31.parent.parent), PATTERN)


def _copy(office31: Path, dst: Path, per_class: int = 2, classes=("back_pack", "bike")) -> list[Path]:
    out = []
    for c in classes:
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((office31 / "dslr" / "images" / c).iterdir())[:per_class]:
            shutil.copy(f, dst / c / f.name)
            out.append(dst / c / f.name)
    return out


def test_office31_dslr_folder_matches_feature_file(dslr, office31):
    ref = np.load(office31.parent / "features-mobilenetv2" / "dslr.npz")
    assert isinstance(dslr, FileImageDomain)
    assert len(dslr) == 498 and dslr.num_classes == 31
    assert dslr.classes == [str(c) for c in ref["classes"]]
    np.testing.assert_array_equal(dslr.y, ref["y"])
    assert dslr.ids[0] == "back_pack/frame_0001.jpg"
    assert dslr.describe(0).endswith("dslr/images/back_pack/frame_0001.jpg")
    assert dslr.input_shape == (3, 224, 224) and dslr.resize == 256


def test_load_eval_is_normalised_and_deterministic(dslr):
    x = dslr.load(np.array([0, 300]))
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, dslr.load(np.array([0, 300])))
    # undo the normalisation: pixel values back in [0, 1]
    raw = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert dslr.load(np.array([], dtype=np.int64)).shape == (0, 3, 224, 224)


def test_load_train_augments(dslr):
    torch.manual_seed(0)
    a = dslr.load(np.array([5, 6]), train=True)
    b = dslr.load(np.array([5, 6]), train=True)
    assert a.shape == (2, 3, 224, 224)
    assert not torch.equal(a, b)  # random crop / flip


def test_strong_view_is_the_train_view_plus_randaugment(dslr):
    """LADA's strong view of image files: same crop / flip draw as the train view, then RandAugment(1, 2)."""
    changed = []
    for i in range(0, 498, 83):  # one image per draw: the same seed gives the same crop and flip
        torch.manual_seed(i)
        weak = dslr.load(np.array([i]), train=True)
        torch.manual_seed(i)
        strong = dslr.load_strong(np.array([i]))
        assert strong.shape == weak.shape == (1, 3, 224, 224) and strong.dtype == torch.float32
        raw = strong * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
        changed.append(bool((strong - weak).abs().max() > 1e-3))
    assert any(changed)  # RandAugment changed some images (its op can be the identity)
    assert dslr.load_strong(np.array([], dtype=np.int64)).shape == (0, 3, 224, 224)


def test_subset_keeps_paths_and_labels(dslr):
    s = dslr.subset(np.array([497, 0]), "d2")
    assert isinstance(s, FileImageDomain) and s.name == "d2"
    assert list(s.ids) == [dslr.ids[497], dslr.ids[0]]
    assert list(s.y) == [dslr.y[497], dslr.y[0]]
    assert s.describe(1) == dslr.describe(0)
    assert s.load(np.array([1])).shape == (1, 3, 224, 224)


def test_load_domains_pair_image_size_and_inductive_split(office31):
    cfg = DataConfig(format="image_folder", root=str(office31.parent.parent), pattern=PATTERN, source="webcam",
                     target="dslr", protocol="inductive", image_size=112)
    d = load_domains(cfg, seed=0)
    assert d.source.input_shape == (3, 112, 112) and d.pool.resize == 128
    assert isinstance(d.pool, FileImageDomain) and isinstance(d.test, FileImageDomain)
    assert len(d.pool) + len(d.test) == 498
    assert not set(d.pool.ids) & set(d.test.ids)
    assert d.test.load(np.array([0])).shape == (1, 3, 112, 112)


def test_resize_smaller_than_crop_is_config_error(office31, tmp_path):
    _copy(office31, tmp_path / "d", per_class=1)
    cfg = DataConfig(format="image_folder", image_size=224, resize=200)
    with pytest.raises(ConfigError, match="data.resize=200"):
        load_image_folder(tmp_path / "d", "d", cfg=cfg)


def test_corrupt_image_is_named_by_verify_and_by_load(office31, tmp_path):
    root = tmp_path / "dom"
    _copy(office31, root)
    bad = root / "bike" / "zz_broken.jpg"
    bad.write_bytes(b"this is not a jpeg" * 10)
    with pytest.raises(DataError, match="zz_broken.jpg"):
        load_image_folder(root, "dom")
    d = load_image_folder(root, "dom", cfg=DataConfig(format="image_folder", verify_images=False))
    i = int(np.flatnonzero(d.ids == "bike/zz_broken.jpg")[0])
    assert d.load(np.array([0])).shape == (1, 3, 224, 224)
    with pytest.raises(DataError, match=r"cannot read image .*zz_broken\.jpg") as err:
        d.load(np.array([0, i]))
    assert "np.str_" not in str(err.value)  # (PIL's message held the path as numpy's repr of it)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        load_image_folder(tmp_path / "nope", "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_image_folder(tmp_path / "empty", "empty")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.jpg").write_bytes(b"x")  # loose images: an unlabelled domain, whose files are checked
    with pytest.raises(DataError, match=r"a\.jpg"):
        load_image_folder(tmp_path / "loose", "loose")
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    (tmp_path / "noimg" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="but no images"):
        load_image_folder(tmp_path / "noimg", "noimg")
    # a line break in a file name: a sample id the query CSVs cannot hold on one line (their import refused the
    # whole file): named before any work, in a class folder and in a folder of loose photos
    (tmp_path / "nl" / "cls").mkdir(parents=True)
    (tmp_path / "nl" / "cls" / "new\nline.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=r"1 image path\(s\) hold a line break, e.g. 'cls/new\\nline\.jpg'"):
        load_image_folder(tmp_path / "nl", "nl")
    (tmp_path / "nl2").mkdir()
    (tmp_path / "nl2" / "new\rline.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="hold a line break"):
        load_image_folder(tmp_path / "nl2", "nl2")
    # a Latin-1 name from an old archive: its id could not be stored (UnicodeEncodeError in the run's first write)
    (tmp_path / "l1" / "cls").mkdir(parents=True)
    (tmp_path / "l1" / "cls" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"x")
    with pytest.raises(DataError, match=r"1 image path\(s\) are not UTF-8, e\.g\. b'cls/caf\\xe9\.jpg'.*convmv"):
        load_image_folder(tmp_path / "l1", "l1")


def test_an_image_reached_through_a_link_from_another_class_is_refused(office31, tmp_path):
    """A link inside a class folder to another class's folder (or back up the tree) made its images a second set
    of samples with the first folder's label."""
    _copy(office31, tmp_path / "dom", per_class=2)
    (tmp_path / "dom" / "bike" / "alias").symlink_to(tmp_path / "dom" / "back_pack")
    with pytest.raises(DataError, match=r"is reached as back_pack/.* and as bike/alias/.*symbolic link"):
        load_image_folder(tmp_path / "dom", "dom")
    (tmp_path / "dom" / "bike" / "alias").unlink()
    (tmp_path / "dom" / "bike" / "loop").symlink_to(tmp_path / "dom")
    with pytest.raises(DataError, match=r"symbolic link"):
        load_image_folder(tmp_path / "dom", "dom")
    (tmp_path / "dom" / "bike" / "loop").unlink()
    assert len(load_image_folder(tmp_path / "dom", "dom")) == 4


def test_empty_class_folder_is_kept_with_a_warning(office31, tmp_path):
    _copy(office31, tmp_path / "d", per_class=1, classes=("back_pack", "bike"))
    (tmp_path / "d" / "aaa_empty").mkdir()
    (tmp_path / "d" / "zzz_empty" / "sub").mkdir(parents=True)
    with pytest.warns(UserWarning, match=r"2 class folder\(s\) hold no images: \['aaa_empty', 'zzz_empty'\]"):
        d = load_image_folder(tmp_path / "d", "d", cfg=DataConfig(format="image_folder", verify_images=False))
    assert d.classes == ["aaa_empty", "back_pack", "bike", "zzz_empty"]
    assert sorted(set(d.y.tolist())) == [1, 2]


def test_class_lists_must_match_between_folders(office31, tmp_path):
    _copy(office31, tmp_path / "a", per_class=1, classes=("back_pack", "bike"))
    _copy(office31, tmp_path / "b", per_class=1, classes=("back_pack", "bottle"))
    cfg = DataConfig(format="image_folder", root=str(tmp_path), source="a", target="b")
    with pytest.raises(DataError, match="class lists differ"):
        load_domains(cfg, 0)


# -- image lists ---------------------------------------------------------------------------------------


def test_image_list_int_labels_relative_to_data_root(office31, data_root, dslr, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAKIT_DATA", str(data_root))
    rows = [0, 1, 100, 497]
    rel = [f"office31/images/dslr/images/{dslr.ids[i]}" for i in rows]
    lst = tmp_path / "dslr.txt"
    lst.write_text("".join(f"{p} {dslr.y[i]}\n" for p, i in zip(rel, rows)) + "\n# comment\n")
    d = load_image_list(lst, "dslr")
    assert list(d.ids) == rel
    np.testing.assert_array_equal(d.y, dslr.y[rows])
    assert d.classes == [str(c) for c in range(int(dslr.y[497]) + 1)]
    torch.testing.assert_close(d.load(np.array([2])), dslr.load(np.array([100])))


def test_image_list_names_classes_txt_and_unlabelled(office31, tmp_path):
    # the Transfer-Learning-Library layout: <dataset>/image_list/<domain>.txt, paths relative to <dataset>
    files = _copy(office31, tmp_path / "data" / "dslr", per_class=2)
    (tmp_path / "image_list").mkdir()
    (tmp_path / "image_list" / "classes.txt").write_text("back_pack\nbike\nbottle\n")
    rel = [f.relative_to(tmp_path).as_posix() for f in files]
    lines = [f"{rel[0]} back_pack", f"{rel[1]} 0", f"{rel[2]} bike", rel[3]]
    lst = tmp_path / "image_list" / "dslr.txt"
    lst.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    d = load_image_list(lst, "dslr")
    assert d.classes == ["back_pack", "bike", "bottle"]
    assert list(d.y) == [0, 1, -1] and not d.has_labels
    spaced = tmp_path / "data" / "my photos" / "x.jpg"  # an unlabelled path with a space is one path, no label
    spaced.parent.mkdir(parents=True)
    shutil.copy(files[0], spaced)
    lst.write_text(f"{rel[0]} back_pack\ndata/my photos/x.jpg\n")
    assert list(load_image_list(lst, "dslr").y) == [0, -1]
    lst.write_text("\n".join(lines[1:3]) + "\n")  # mixed index / name: one way for the whole list
    with pytest.raises(DataError, match=r"line 2: label 'bike' is a class name, but other lines give integer"):
        load_image_list(lst, "dslr")
    lst.write_text(f"{rel[0]} back_pack\n{rel[1]} dog\n")  # the label named is the one not in classes.txt
    with pytest.raises(DataError, match=r"line 2: label 'dog' is neither a class name"):
        load_image_list(lst, "dslr")
    # classes named by numbers: labels are names in every list, so "1" means the same class in source and target
    (tmp_path / "image_list" / "classes.txt").write_bytes("\ufeff1\n2\n3\n".encode())  # (saved with a BOM)
    lst.write_text(f"{rel[0]} 1\n{rel[1]} 2\n")
    assert list(load_image_list(lst, "dslr").y) == [0, 1]
    lst.write_text(f"{rel[0]} 0\n{rel[1]} 1\n")
    with pytest.raises(DataError, match=r"line 1: label '0' is not a class name .*named by numbers"):
        load_image_list(lst, "dslr")
    (tmp_path / "image_list" / "classes.txt").unlink()
    lst.write_text(f"{rel[0]} 1\n{rel[1]} 2\n")  # 1-based codes without a classes.txt: class 0 stays empty
    with pytest.warns(UserWarning, match="labels start at 1, so classes 0..0 have no sample"):
        assert load_image_list(lst, "dslr").classes == ["0", "1", "2"]


def test_image_list_errors_name_the_line(office31, tmp_path):
    files = _copy(office31, tmp_path / "imgs", per_class=1)
    lst = tmp_path / "dom.txt"
    a, b = (f.relative_to(tmp_path).as_posix() for f in files)

    lst.write_text(f"{a} 0\n\n{b} 1\nimgs/missing.jpg 1\n")
    with pytest.raises(DataError, match=r"dom\.txt, line 4: image not found: imgs/missing\.jpg"):
        load_image_list(lst, "dom")
    lst.write_text(f"{a} 0\n{b.replace('/', chr(92))} 1\n")
    with pytest.raises(DataError, match=r"line 2: image not found: .*the list uses Windows backslashes"):
        load_image_list(lst, "dom")

    lst.write_text(f"{a} 0\n{b} -1\n")
    with pytest.raises(DataError, match=r"line 2: negative label"):
        load_image_list(lst, "dom")
    for huge in ("300000000", "99999999999999999999"):  # a list of 300M class names, or an int64 overflow
        lst.write_text(f"{a} 0\n{b} {huge}\n")
        with pytest.raises(DataError, match=rf"line 2: label {huge} would make {huge} classes for 2 labelled"):
            load_image_list(lst, "dom")

    lst.write_text(f"{a} 0\n{a} 1\n")
    with pytest.raises(DataError, match=r"line 2: .* listed twice \(first at line 1\)"):
        load_image_list(lst, "dom")
    for other in (f"./{a}", a.replace("/", "//"), str(tmp_path / a)):  # the same file written another way
        lst.write_text(f"{a} 0\n{b} 1\n{other} 1\n")
        with pytest.raises(DataError, match=r"line 3: .* is the image of line 1 too"):
            load_image_list(lst, "dom")

    (tmp_path / "classes.txt").write_text("back_pack\nbike\n")
    lst.write_text(f"{a} 0\n{b} 2\n")
    with pytest.raises(DataError, match=r"line 2: label 2 is outside the class list 0..1"):
        load_image_list(lst, "dom")

    with pytest.raises(DataError, match="image list not found"):
        load_image_list(tmp_path / "other.txt", "other")
    lst.write_text("# nothing\n")
    with pytest.raises(DataError, match="lists no images"):
        load_image_list(lst, "dom")


def test_image_list_lines_in_other_layouts_are_named_as_such(office31, tmp_path):
    """A CSV row (``path,label``), a header line and a class name holding a space were reported as a file listed
    twice or an image not found, without saying what was wrong with the line."""
    files = _copy(office31, tmp_path / "my imgs", per_class=1)
    lst = tmp_path / "dom.txt"
    a, b = (f.relative_to(tmp_path).as_posix() for f in files)
    for text in (f"{a},0\n{b},1\n", f"path,label\n{a},0\n{b},1\n", f"{a}, back_pack\n"):
        lst.write_text(text)
        line = 2 if text.startswith("path") else 1
        with pytest.raises(DataError, match=rf"dom\.txt, line {line}: .* is comma-separated .*replace the comma"):
            load_image_list(lst, "dom")
    lst.write_text(f"path label\n{a} 0\n{b} 1\n")
    with pytest.raises(DataError, match=r"line 1: image not found: path .*if line 1 is a header, remove it"):
        load_image_list(lst, "dom")
    lst.write_text(f"{a} back pack\n{b} bike\n")
    with pytest.raises(DataError, match=r"line 1: image not found: .* a label holding a space: .*classes\.txt"):
        load_image_list(lst, "dom")
    lst.write_text(f"{a} 0\n{b} 1\n")  # paths with a space and one-word labels are fine
    assert load_image_list(lst, "dom").y.tolist() == [0, 1]


def test_image_list_corrupt_file_named(office31, tmp_path):
    _copy(office31, tmp_path / "imgs", per_class=1)
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG garbage")
    lst = tmp_path / "dom.txt"
    lst.write_text("imgs/back_pack/frame_0001.jpg 0\nimgs/bad.png 1\n")
    with pytest.raises(DataError, match=r"unreadable image\(s\): .*bad\.png"):
        load_image_list(lst, "dom")


def test_16_bit_images_keep_their_range(tmp_path):
    """A 16-bit PNG is scaled to 8 bits, not clipped to white (PIL's convert("RGB") clips values above 255)."""
    from PIL import Image

    from adakit.data.images import read_image

    a = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    Image.fromarray((a // 257).astype(np.uint8)).save(tmp_path / "g8.png")
    got, want = (np.asarray(read_image(tmp_path / f), dtype=int) for f in ("g16.png", "g8.png"))
    assert got.shape == (32, 32, 3) and got.min() == 0 and got.max() == 255
    assert np.abs(got - want).max() <= 1


def test_12_bit_data_in_a_16_bit_image_is_warned_about(tmp_path):
    """12-bit scanner data in a 16-bit PNG (0..4095) was scaled by 65535 without a word: nearly black images."""
    import warnings

    from PIL import Image

    from adakit.data.images import read_image

    a = np.linspace(0, 4095, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g12.png")
    with pytest.warns(UserWarning, match="no pixel above 4095: 12-bit .* rescale them"):
        got = np.asarray(read_image(tmp_path / "g12.png"), dtype=int)
    assert got.max() == 16  # (scaled as 16 bits: the reason for the warning)
    Image.fromarray((a * 16).astype(np.uint16)).save(tmp_path / "full.png")  # the full range: no warning
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "black.png")  # black whatever its depth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "full.png")
        read_image(tmp_path / "black.png")
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "eight.png")  # 8-bit values, 16-bit file
    with pytest.warns(UserWarning, match="no pixel above 4095"):
        read_image(tmp_path / "eight.png")


def test_images_are_read_as_viewers_show_them(tmp_path):
    """EXIF orientation applied, transparency composited on white (also palette and grey+alpha), float pixels
    from [0, 1] scaled (they came out black)."""
    from PIL import Image

    from adakit.data.images import read_image

    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phones write portrait shots
    Image.fromarray(wide).transpose(Image.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(read_image(tmp_path / "phone.jpg"), dtype=int)
    assert upright.shape == (20, 40, 3)
    assert upright[10, 5, 0] > 200 and upright[10, 35, 2] > 200  # red on the left, blue on the right, as shown

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (0, 255, 0)  # green stored under the transparent pixels
    rgba[2:6, 2:6] = (200, 30, 30, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    Image.fromarray(rgba).convert("LA").save(tmp_path / "cut_la.png")
    p = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=4)
    p.save(tmp_path / "cut_p.png", transparency=int(np.asarray(p)[0, 0]))
    for name in ("cut.png", "cut_la.png", "cut_p.png"):
        a = np.asarray(read_image(tmp_path / name))
        assert a[0, 0].tolist() == [255, 255, 255], name
        assert a[4, 4].tolist() != [255, 255, 255], name
    assert np.asarray(read_image(tmp_path / "cut.png"))[4, 4].tolist() == [200, 30, 30]

    Image.fromarray(np.linspace(0, 1, 40, dtype=np.float32)[None].repeat(4, 0), "F").save(tmp_path / "f.tif")
    a = np.asarray(read_image(tmp_path / "f.tif"))[0, :, 0]
    assert a[0] == 0 and a[-1] == 255 and abs(int(a[20]) - 131) <= 1


def test_large_jpegs_are_decoded_at_a_reduced_scale_that_keeps_twice_the_resize(tmp_path):
    from PIL import Image

    from adakit.data.images import read_image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "big.jpg").size == (1600, 1200)
    assert read_image(tmp_path / "big.jpg", size_hint=256).size == (800, 600)  # 1/2 scale: ≥ 512 kept
    assert read_image(tmp_path / "big.jpg", size_hint=100).size == (400, 300)  # 1/4 scale: ≥ 200 kept
    assert read_image(tmp_path / "big.jpg", size_hint=700).size == (1600, 1200)  # under 4× the resize: as is


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "BMP", "TIFF", "PNG"])
def test_truncated_images_stop_the_run_before_training(office31, tmp_path, fmt):
    """PIL's header check passed truncated JPEG, GIF, BMP and TIFF files; the run then stopped mid-training."""
    from PIL import Image

    root = tmp_path / "dom"
    _copy(office31, root, per_class=1)
    im = Image.open(next((root / "bike").iterdir())).convert("RGB")
    path = root / "bike" / f"cut.{fmt.lower()}"
    im.save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=rf"1 unreadable image\(s\): \S*cut\.{fmt.lower()} \(") as err:
        load_image_folder(root, "dom")
    assert "np.str_" not in str(err.value) and "Replace them with readable copies" in str(err.value)


def test_an_heic_photo_named_jpg_is_named_as_such(tmp_path):
    from adakit.data.images import check_decodes

    (tmp_path / "IMG_0001.jpg").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    why = check_decodes(str(tmp_path / "IMG_0001.jpg"))
    assert why is not None and "HEIC/AVIF photo" in why and "convert it to JPEG" in why and "np.str_" not in why


def test_junk_folders_are_skipped_and_linked_folders_followed(office31, tmp_path):
    root = tmp_path / "dom"
    files = _copy(office31, root, per_class=2)
    for junk in ("bike/.thumbnails", "bike/@eaDir/x.jpg", "__MACOSX/bike", "@eaDir/bike", ".hidden"):
        (root / junk).mkdir(parents=True)
        shutil.copy(files[0], root / junk / "thumb.jpg")
    store = tmp_path / "store" / "more"
    store.mkdir(parents=True)
    shutil.copy(files[0], store / "linked.jpg")
    (root / "bike" / "more").symlink_to(store)
    (root / "bike" / "loop").symlink_to(root / "bike")  # a link back up the tree is read once
    d = load_image_folder(root, "dom")
    assert d.classes == ["back_pack", "bike"]
    assert sorted(d.ids.tolist()) == sorted([f"{f.parent.name}/{f.name}" for f in files] + ["bike/more/linked.jpg"])


def test_a_class_folder_linked_to_a_missing_folder_is_named_not_dropped(tmp_path):
    """A class folder that is a link to a folder gone missing (an unmounted drive) was skipped silently: the class
    vanished from the list and the run stopped on class lists that differ, naming the other domain's folder."""
    from PIL import Image

    root = tmp_path / "dom"
    (root / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "cat" / "a.png")
    (root / "dog").symlink_to(tmp_path / "unmounted" / "dog")
    (root / "gone.jpg").symlink_to(tmp_path / "unmounted" / "gone.jpg")  # a link to a photo: left out (warned)
    with pytest.raises(DataError, match=r"class folder .*dog is a link to .*unmounted/dog, which does not exist"):
        load_image_folder(root, "dom")
    (tmp_path / "unmounted" / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "unmounted" / "dog" / "b.png")
    d = load_image_folder(root, "dom")
    assert d.classes == ["cat", "dog"] and d.ids.tolist() == ["cat/a.png", "dog/b.png"]


def test_an_image_unreadable_in_a_loader_worker_is_told_as_in_the_main_process(tmp_path):
    """With train.num_workers > 0, a file that went bad after the check (or with data.verify_images off) stopped
    the run with torch's "Caught DataError in DataLoader worker process 0" and the worker's traceback, the
    message on the last of some twenty lines."""
    from PIL import Image

    from adakit.data.loading import batches

    for i in range(4):
        (tmp_path / "cat").mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "cat" / f"{i}.png")
    (tmp_path / "cat" / "2.png").write_bytes(b"\x89PNG cut short")
    d = load_image_folder(tmp_path, "dom", cfg=DataConfig(format="image_folder", source="dom", target="dom",
                                                          image_size=8, verify_images=False))
    keys = [np.array([0, 1]), np.array([2, 3])]
    with pytest.raises(DataError) as in_process:
        list(batches(d, keys, workers=0))
    with pytest.raises(DataError) as in_worker:
        list(batches(d, keys, workers=2, train=True))
    assert str(in_worker.value) == str(in_process.value) and str(in_worker.value).startswith("cannot read image ")


def test_worker_loaded_passes_equal_the_in_process_ones(dslr):
    """`forward_domain` and the training loop load image batches in DataLoader workers with ``num_workers`` (a GPU
    run's pool pass was bound by decoding in the main process): evaluation batches are the same tensors, and the
    model's outputs on the whole domain the same."""
    from adakit.data.loading import batches
    from adakit.inference import forward_domain

    dom = dslr.subset(np.arange(0, len(dslr), 25))
    keys = [np.arange(s, min(s + 7, len(dom))) for s in range(0, len(dom), 7)]
    here = list(batches(dom, keys))
    there = list(batches(dom, keys, workers=2))
    assert len(here) == len(there) == len(keys)
    assert all(torch.equal(a, b) for a, b in zip(here, there))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    class Net(torch.nn.Module):
        feature_dim, num_classes = 4, 4

        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            f = self.body(x)
            return f, f * 2

    f0, z0 = forward_domain(Net(), dom, batch_size=5)
    torch.manual_seed(7)
    f2, z2 = forward_domain(Net(), dom, batch_size=5, num_workers=2)
    after = torch.rand(3)
    assert torch.equal(f0, f2) and torch.equal(z0, z2) and len(f0) == len(dom)
    # the pass drew nothing from the global generator (dropout, augmentation and objectives draw from it in training)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))
    # an empty batch key keeps the input shape (a rank's share of a batch smaller than the world)
    assert next(batches(dom, [np.zeros(0, dtype=np.int64)], workers=1)).shape[1:] == here[0].shape[1:]


def test_a_flat_folder_of_photos_is_an_unlabelled_target_with_the_sources_classes(office31, tmp_path):
    """Unlabelled target photos need no class folders: the folder (images at any depth) is an unlabelled domain that
    takes the source's class list; the run trains on it (UDA) and records validators, no accuracy. As the source,
    such a folder is refused with what to do."""
    from adakit.loop import ActiveLoop

    _copy(office31, tmp_path / "data" / "src")
    flat = tmp_path / "data" / "photos"
    flat.mkdir(parents=True)
    for i, f in enumerate(_copy(office31, tmp_path / "tmp", per_class=2)):
        shutil.copy(f, flat / f"p{i}.jpg")
    dom = load_image_folder(flat, "photos")
    assert dom.classes == [] and list(dom.y) == [-1] * 4 and list(dom.ids) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    # images beside class folders belong to no class: said, not dropped silently
    (tmp_path / "data" / "mixed").mkdir()
    shutil.copytree(tmp_path / "data" / "src", tmp_path / "data" / "mixed", dirs_exist_ok=True)
    shutil.copy(flat / "p0.jpg", tmp_path / "data" / "mixed" / "stray.jpg")
    with pytest.warns(UserWarning, match=r"1 image\(s\) directly in .*mixed belong to no class folder"):
        assert "stray.jpg" not in load_image_folder(tmp_path / "data" / "mixed", "mixed").ids
    data = {"format": "image_folder", "root": str(tmp_path / "data"), "pattern": "{root}/{domain}", "source": "src",
            "target": "photos", "image_size": 32, "resize": 32}
    d = load_domains(DataConfig(**data), seed=0)
    assert d.pool.classes == d.source.classes == ["back_pack", "bike"] and not (d.pool.y >= 0).any()
    cfg = {"seed": 0, "data": data, "model": {"backbone": "resnet18", "bottleneck_dim": 4},
           "objective": {"name": "dann"}, "budget": {"total": 0, "rounds": 0},
           "train": {"warmup_iters": 2, "batch_size": 2, "eval_batch_size": 4, "threads": 1}}
    s = ActiveLoop(cfg, tmp_path / "run", show_progress=False).run()
    assert s["final_accuracy"] is None and s["unlabelled_rounds"] and "val/entropy" in s["unlabelled_rounds"][0]
    with pytest.raises(DataError, match="no class list: put its images in one sub-folder per class"):
        load_domains(DataConfig(**{**data, "source": "photos", "target": "src"}), seed=0)


def test_photos_adakit_cannot_read_and_broken_links_are_named_not_dropped_silently(tmp_path):
    from PIL import Image

    from adakit.data.images import find_images

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.heic").write_bytes(b"x")
    (tmp_path / "c.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "notes.txt").write_text("not a photo: left out without a word")
    with pytest.warns(UserWarning, match=r"2 file\(s\) left out: photos in a format .* \['b.heic', 'c.jpg'\]"):
        assert find_images(tmp_path) == [tmp_path / "a.png"]


def test_a_folder_to_extract_features_from_is_read_in_the_order_training_reads_it(tmp_path):
    """compute_features / adakit predict sorted a folder's images by full path: 'car-wheel/...' before 'car/...'
    ('-' sorts before '/'), while load_image_folder reads class 'car' first: rows silently misaligned."""
    from PIL import Image

    from adakit.data.images import read_image_inputs

    for rel in ("car/b.png", "car/a.png", "car-wheel/a.png", "car_x/a.png", "car/sub-1/a.png", "car/sub/a.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / rel)
    trained = load_image_folder(tmp_path, "d")
    read = read_image_inputs(tmp_path, 8, 8)
    assert list(read.ids) == list(trained.ids) and list(read.paths) == list(trained.paths)
    assert list(trained.ids)[:2] == ["car/a.png", "car/b.png"] and trained.classes == ["car", "car-wheel", "car_x"]
    Image.new("RGB", (8, 8)).save(tmp_path / "z.png")  # beside the class folders: read too, first
    with pytest.warns(UserWarning, match="belong to no class folder"):
        trained = load_image_folder(tmp_path, "d")
    assert list(read_image_inputs(tmp_path, 8, 8).ids) == ["z.png", *trained.ids]


def test_jpeg_files_under_a_browser_suffix_are_named_not_dropped_silently(tmp_path):
    """Browsers save JPEGs as .jfif: such files were left out of an image folder without a word."""
    from PIL import Image

    from adakit.data.images import find_images

    for name in ("a.jpg", "b.jfif", "c.JFIF", "d.jpe"):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name, format="JPEG")
    with pytest.warns(UserWarning, match=r"3 JPEG file\(s\) left out for their suffix \(.JFIF, .jfif, .jpe\): "
                                         r"rename them to .jpg to use them: \['b.jfif', 'c.JFIF', 'd.jpe'\]"):
        found = find_images(tmp_path)
    assert [p.name for p in found] == ["a.jpg"]  # (the file list of existing runs is unchanged)
