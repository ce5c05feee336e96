"""`adakit data prepare` from small fake releases with the real layouts (no network)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from dataset_fakes import (
    idx_files,
    image_bytes,
    mnistm_members,
    office31_members,
    usps_libsvm,
    usps_text,
    write_tar,
    write_zip,
)

from adakit.data.digits import load_digits
from adakit.data.images import load_image_folder, load_image_list
from adakit.datasets import CATALOG, extract, prepare
from adakit.errors import ConfigError, DataError
from adakit.rundir import RunInUseError

O31 = {"amazon": {"back_pack": 2, "bike": 1}, "dslr": {"back_pack": 1, "bike": 1},
       "webcam": {"back_pack": 1, "bike": 2}}
O31_EXPECTED = {"amazon": 3, "dslr": 2, "webcam": 3}


@pytest.fixture
def office31_tar(tmp_path):
    members = {f"domain_adaptation_images/{k}": v for k, v in office31_members(O31).items()}
    return write_tar(tmp_path / "domain_adaptation_images.tar.gz", members)


def test_office31_from_archive_writes_the_config_layout(office31_tar, tmp_path):
    out = tmp_path / "office31"
    res = prepare("office31", out, [office31_tar], expected=O31_EXPECTED, classes=["back_pack", "bike"],
                  progress=False)
    assert res.counts == O31_EXPECTED
    assert any("no published checksum, computed sha256 = " in n for n in res.notes)
    # the layout configs/office31-images.yaml reads: {root}/office31/images/{domain}/images/<class>/<image>
    dom = load_image_folder(out / "images" / "webcam" / "images", "webcam")
    assert dom.classes == ["back_pack", "bike"] and len(dom) == 3
    assert not any(p.name.startswith(".staging") for p in out.iterdir())


def test_office31_count_mismatch_names_domain_and_missing_classes(office31_tar, tmp_path):
    out = tmp_path / "o31"
    classes = ["back_pack", "bike", "mug"]
    with pytest.raises(DataError, match=r"Office-31 webcam: 3 images, expected 5; missing classes: mug") as e:
        prepare("office31", out, [office31_tar], expected={**O31_EXPECTED, "webcam": 5}, classes=classes,
                progress=False)
    assert "amazon" not in str(e.value)  # only the failing domain is named
    assert not (out / "images").exists()  # nothing installed
    assert not any(p.name.startswith(".staging") for p in out.iterdir())


def test_a_renamed_class_folder_is_named_even_when_the_counts_match(tmp_path):
    """A class folder renamed by hand ("backpack" for "back_pack") passed when the image count matched; the
    domains' class lists then disagree at the first run. Named, nothing written."""
    counts = {"amazon": {"backpack": 2, "bike": 1}, "dslr": {"back_pack": 1, "bike": 1},
              "webcam": {"back_pack": 1, "bike": 2}}
    arc = write_tar(tmp_path / "o31.tar.gz", {f"x/{k}": v for k, v in office31_members(counts).items()})
    with pytest.raises(DataError, match=r"Office-31 amazon: class folder\(s\) not in the release's class list: "
                                        r"backpack \(its classes: back_pack, bike, .*\); rename them"):
        prepare("office31", tmp_path / "o31", [arc], expected=O31_EXPECTED, progress=False)
    assert not (tmp_path / "o31" / "images").exists()


def test_catalogue_counts_apply_without_override(office31_tar, tmp_path):
    with pytest.raises(DataError, match=r"Office-31 amazon: 3 images, expected 2,817; missing classes: bike_helmet"):
        prepare("office31", tmp_path / "o", [office31_tar], progress=False)


def test_corrupt_image_is_reported_by_path(tmp_path):
    members = {f"x/{k}": v for k, v in office31_members(O31).items()}
    members["x/dslr/images/bike/frame_0009.jpg"] = b"not a jpeg at all"
    arc = write_tar(tmp_path / "o31.tar", members, mode="w")
    with pytest.raises(DataError, match=r"Office-31 dslr: 1 unreadable image\(s\), as found in the archive or "
                                        r"folder given: \S*dslr/images/bike/frame_0009") as e:
        prepare("office31", tmp_path / "out", [arc], expected={**O31_EXPECTED, "dslr": 3}, progress=False)
    assert ".staging" not in str(e.value)  # never a path under the removed staging folder


def test_existing_output_needs_force(office31_tar, tmp_path):
    out = tmp_path / "o31"
    prepare("office31", out, [office31_tar], expected=O31_EXPECTED, progress=False)
    with pytest.raises(DataError, match="already prepared.*--force"):
        prepare("office31", out, [office31_tar], expected=O31_EXPECTED, progress=False)
    res = prepare("office31", out, [office31_tar], expected=O31_EXPECTED, progress=False, force=True)
    assert res.counts["amazon"] == 3


def test_a_second_prepare_into_the_same_folder_waits_for_nothing_and_names_the_first(office31_tar, tmp_path):
    """Two prepares of one dataset into one folder shared its staging folder (each removed the other's files):
    the second is refused, naming the first's PID, and leaves the first's staging alone."""
    import subprocess
    import sys

    out = tmp_path / "o31"
    out.mkdir()
    (out / ".staging-office31").mkdir()  # the first prepare's work in progress
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from adakit.rundir import acquire; "
                               f"acquire({str(out)!r}, '.prepare-office31.lock'); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=f"{out}.* in use by PID {holder.pid}"):
            prepare("office31", out, [office31_tar], expected=O31_EXPECTED, progress=False)
        assert (out / ".staging-office31").is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert prepare("office31", out, [office31_tar], expected=O31_EXPECTED, progress=False).counts == O31_EXPECTED


def test_force_replaces_through_a_folder_moved_aside_and_read_only_folders_are_installed(tmp_path, monkeypatch):
    """--force deleted the old domain folder and then moved the new one in: a process killed while deleting left a
    domain with some images gone, which a later prepare took as prepared. The old folder is now moved aside and
    removed once the new one is in place (a leftover of a killed process is removed next time). Folders copied or
    extracted read-only (555) could not be moved into place by a non-root user: they are made owner-writable.
    --out that is a file was an OSError traceback."""
    import os
    import stat

    members = {f"x/{k}": v for k, v in office31_members(O31).items()}
    arc = write_tar(tmp_path / "o31.tar", members, mode="w")
    src = tmp_path / "src"
    with tarfile.open(arc) as tf:
        tf.extractall(src, filter="data")
    for dirpath, _, _ in os.walk(src):
        os.chmod(dirpath, 0o555)
    out = tmp_path / "o31"
    prepare("office31", out, [src], expected=O31_EXPECTED, progress=False)
    webcam = out / "images" / "webcam"
    assert all(os.stat(d).st_mode & stat.S_IWUSR for d, _, _ in os.walk(out))
    left = out / "images" / ".replaced-webcam"  # as a process killed after moving the old folder aside leaves it
    left.mkdir()
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moves.append((str(a), str(b))), real_replace(a, b))[1])
    prepare("office31", out, [src], expected=O31_EXPECTED, progress=False, force=True)
    assert (str(webcam), str(left)) in moves  # the old folder went aside, never deleted in place
    assert not left.exists() and len(list(webcam.rglob("*.jpg"))) == 3
    for dirpath, _, _ in os.walk(src):
        os.chmod(dirpath, 0o755)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"--out .*afile: cannot write there"):
        prepare("office31", tmp_path / "afile", [arc], expected=O31_EXPECTED, progress=False)


def test_officehome_from_extracted_folder_renames_real_world(tmp_path):
    src = tmp_path / "OfficeHomeDataset_10072016"
    for d in ("Art", "Clipart", "Product", "Real World"):
        for c in ("Alarm_Clock", "Backpack"):
            (src / d / c).mkdir(parents=True)
            (src / d / c / "00001.jpg").write_bytes(image_bytes())
    (src / "ImageInfo.csv").write_text("x")
    out = tmp_path / "officehome"
    res = prepare("officehome", out, [src], expected={d: 2 for d in ("Art", "Clipart", "Product", "Real_World")},
                  progress=False)
    assert sorted(res.counts) == ["Art", "Clipart", "Product", "Real_World"]
    assert load_image_folder(out / "Real_World", "Real_World").classes == ["Alarm_Clock", "Backpack"]
    assert (src / "Real World" / "Backpack" / "00001.jpg").is_file()  # the user's folder is left alone


def test_prepare_refuses_out_inside_from_and_copies_no_link_loop(tmp_path):
    """--out inside --from copied the staging folder into itself (RecursionError, an empty folder left behind);
    a link back up the tree inside --from made nested copies until shutil gave up."""
    src = tmp_path / "OfficeHomeDataset_10072016"
    for d in ("Art", "Clipart", "Product", "Real World"):
        for c in ("Alarm_Clock", "Backpack"):
            (src / d / c).mkdir(parents=True)
            (src / d / c / "00001.jpg").write_bytes(image_bytes())
    with pytest.raises(ConfigError, match=r"--out .* lies inside --from .*; prepare into a folder outside it"):
        prepare("officehome", src / "officehome", [src], progress=False)
    assert not (src / "officehome").exists()
    (src / "Art" / "Backpack" / "loop").symlink_to(src)
    res = prepare("officehome", tmp_path / "officehome", [src], progress=False,
                  expected={d: 2 for d in ("Art", "Clipart", "Product", "Real_World")})
    assert res.counts["Art"] == 2
    # a link inside --from to --out: the copy went into its own staging folder until a RecursionError
    (src / "Art" / "Backpack" / "loop").unlink()
    (src / "prepared").symlink_to(tmp_path / "oh2", target_is_directory=True)
    (tmp_path / "oh2").mkdir()
    res = prepare("officehome", tmp_path / "oh2", [src], progress=False,
                  expected={d: 2 for d in ("Art", "Clipart", "Product", "Real_World")})
    assert res.counts["Art"] == 2


def test_officehome_from_zip_subset_of_domains(tmp_path):
    members = {f"OfficeHomeDataset_10072016/{d}/Mug/{i:05d}.jpg": image_bytes(value=i)
               for d in ("Art", "Clipart") for i in range(3)}
    arc = write_zip(tmp_path / "OfficeHomeDataset_10072016.zip", members)
    res = prepare("officehome", tmp_path / "oh", [arc], domains=["Clipart"], expected={"Clipart": 3},
                  progress=False)
    assert res.counts == {"Clipart": 3} and not (tmp_path / "oh" / "Art").exists()


def test_visda_image_lists_and_classes(tmp_path):
    train = {f"train/{c}/src_{i}.png": image_bytes("PNG", value=i) for c in ("aeroplane", "truck") for i in range(2)}
    train["train/image_list.txt"] = b"aeroplane/src_0.png 0\n"
    val = {f"validation/{c}/{i}.jpg": image_bytes(value=i) for c in ("bicycle", "train") for i in range(3)}
    out = tmp_path / "visda"
    res = prepare("visda", out, [write_tar(tmp_path / "train.tar", train, "w"),
                                 write_tar(tmp_path / "validation.tar", val, "w")],
                  expected={"synthetic": 4, "real": 6}, progress=False)
    assert res.counts == {"synthetic": 4, "real": 6}
    assert (out / "classes.txt").read_text().split() == list(CATALOG["visda"].classes)
    real = load_image_list(out / "real.txt", "real")
    assert sorted(set(real.y.tolist())) == [1, 10]  # bicycle, train
    assert "validation/train/0.jpg 10" in (out / "real.txt").read_text()
    # a file name that is not UTF-8 (Latin-1 from an old system) cannot go into the UTF-8 list: named, no traceback
    import os

    folder = tmp_path / "visda-folder"
    for name, data in val.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "validation" / "train" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(image_bytes())
    with pytest.raises(DataError, match=r"VisDA.* real: 1 image path\(s\) are not UTF-8, e\.g\. b.validation/"):
        prepare("visda", tmp_path / "v2", [folder], domains=["real"], expected={"real": 7}, progress=False)


DN_CLASSES = ["aircraft_carrier", "airplane", "alarm_clock"]


def _domainnet_sources(tmp_path, drop=None):
    imgs, lists = {}, {}
    for d in ("clipart", "sketch"):
        for split, idx in (("train", range(0, 4)), ("test", range(4, 6))):
            lines = []
            for i in idx:
                c = i % 3
                path = f"{d}/{DN_CLASSES[c]}/{d}_{c:03d}_{i:06d}.jpg"
                lines.append(f"{path} {c}\n")
                if path != drop:
                    imgs.setdefault(d, {})[path] = image_bytes(value=i)
            lists[f"{d}_{split}.txt"] = "".join(lines)
    paths = [write_zip(tmp_path / f"{d}.zip", m) for d, m in imgs.items()]
    for name, text in lists.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    return paths


def test_domainnet_lists_and_classes(tmp_path):
    out = tmp_path / "dn"
    exp = {"clipart_train": 4, "clipart_test": 2, "sketch_train": 4, "sketch_test": 2}
    res = prepare("domainnet", out, _domainnet_sources(tmp_path), domains=["clipart", "sketch"], expected=exp,
                  progress=False)
    assert res.counts == exp
    assert (out / "classes.txt").read_text().split() == DN_CLASSES
    dom = load_image_list(out / "sketch_test.txt", "sketch_test")
    assert dom.classes == DN_CLASSES and len(dom) == 2


def test_domainnet_missing_listed_image_is_named(tmp_path):
    missing = "clipart/airplane/clipart_001_000001.jpg"
    with pytest.raises(DataError, match=f"DomainNet.*clipart_train: 1 of 4 listed images missing: {missing}"):
        prepare("domainnet", tmp_path / "dn", _domainnet_sources(tmp_path, drop=missing),
                domains=["clipart"], expected={"clipart_train": 4, "clipart_test": 2}, progress=False)


def test_domainnet_uncertain_count_only_warns(tmp_path):
    res = prepare("domainnet", tmp_path / "dn", _domainnet_sources(tmp_path), domains=["clipart"], progress=False)
    assert res.counts == {"clipart_train": 4, "clipart_test": 2}
    assert any("clipart_train: 4 images, expected 33,525" in w and "not confirmed" in w for w in res.warnings)


def test_mnist_idx_files(tmp_path):
    src = tmp_path / "raw"
    files = idx_files(src, "train", 30) + idx_files(src, "t10k", 20)
    out = tmp_path / "digits"
    res = prepare("mnist", out, files, expected={"mnist-train": 30, "mnist": 20}, progress=False,
                  check_checksums=False)
    assert res.counts == {"mnist-train": 30, "mnist": 20}
    assert len(load_digits(out, "mnist")) == 20
    with pytest.raises(DataError, match=r"MNIST mnist: 20 images, expected 10,000"):
        prepare("mnist", tmp_path / "d2", files, progress=False, expected={"mnist-train": 30},
                check_checksums=False)


def test_mnist_published_md5_is_checked_on_local_files(tmp_path):
    files = idx_files(tmp_path / "raw", "t10k", 5)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: checksum mismatch.*9fb629c4189551a2d022fa330f"):
        prepare("mnist", tmp_path / "d", files, domains=["mnist"], expected={"mnist": 5}, progress=False)
    # also when --from is the folder holding them (its files were taken unchecked), named by their path
    with pytest.raises(DataError, match=r"raw/t10k-images-idx3-ubyte\.gz: checksum mismatch"):
        prepare("mnist", tmp_path / "d", [tmp_path / "raw"], domains=["mnist"], expected={"mnist": 5},
                progress=False)
    res = prepare("mnist", tmp_path / "d", [tmp_path / "raw"], domains=["mnist"], expected={"mnist": 5},
                  progress=False, check_checksums=False)
    assert res.counts == {"mnist": 5}


def test_usps_text_and_libsvm(tmp_path):
    (tmp_path / "zip.train.gz").write_bytes(usps_text(12))
    (tmp_path / "usps.t.bz2").write_bytes(usps_libsvm(7))
    out = tmp_path / "digits"
    res = prepare("usps", out, [tmp_path / "zip.train.gz", tmp_path / "usps.t.bz2"],
                  expected={"usps-train": 12, "usps-test": 7}, progress=False, check_checksums=False)
    assert res.counts == {"usps-train": 12, "usps-test": 7}
    test = load_digits(out, "usps-test")
    assert test.y.tolist() == [i % 10 for i in range(7)]  # LIBSVM labels 1..10 -> digits 0..9


def test_mnistm_pngs_become_npz(tmp_path):
    arc = write_tar(tmp_path / "mnist_m.tar.gz", mnistm_members(5, 3))
    out = tmp_path / "digits"
    res = prepare("mnistm", out, [arc], expected={"mnistm-train": 5, "mnistm": 3}, progress=False)
    assert res.counts == {"mnistm-train": 5, "mnistm": 3}
    with np.load(out / "mnistm_test.npz") as z:
        assert z["X"].shape == (3, 32, 32, 3) and z["X"].dtype == np.uint8
    assert load_digits(out, "mnistm").y.tolist() == [0, 1, 2]


def test_missing_domain_in_sources_is_named(tmp_path):
    arc = write_tar(tmp_path / "a.tar.gz", office31_members({"amazon": {"bike": 1}}))
    with pytest.raises(DataError, match="Office-31: the dslr/ folder not found"):
        prepare("office31", tmp_path / "o", [arc], progress=False)


def test_unknown_dataset_and_domain(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'office32'"):
        prepare("office32", tmp_path)
    with pytest.raises(ConfigError, match="--domain 'photo'"):
        prepare("officehome", tmp_path, [tmp_path], domains=["photo"])


def _tar_with(path, name: str, link: str | None = None):
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tf.addfile(info)
        else:
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    return path


def test_extract_refuses_path_traversal(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(DataError, match="unsafe|outside"):
        extract(_tar_with(tmp_path / "up.tar", "../evil.txt"), dest)
    with pytest.raises(DataError, match=r"holds links \(\['innocent'\]\); dataset archives hold only files"):
        extract(_tar_with(tmp_path / "link.tar", "innocent", link="../../../etc/passwd"), dest)
    # any link is refused: chains of links with long names fool Python's "data" filter before its 2025 fixes
    # (CVE-2025-4517: a member was written outside --out); a hard link to a missing member was a KeyError
    with pytest.raises(DataError, match="holds links"):
        extract(_tar_with(tmp_path / "inner.tar", "a/b", link="c"), dest)
    with tarfile.open(tmp_path / "hard.tar", "w") as tf:
        info = tarfile.TarInfo("x")
        info.type, info.linkname = tarfile.LNKTYPE, "missing"
        tf.addfile(info)
    with pytest.raises(DataError, match="holds links"):
        extract(tmp_path / "hard.tar", dest)
    with pytest.raises(DataError, match="outside the destination"):
        extract(write_zip(tmp_path / "bad.zip", {"../evil.txt": b"x"}), dest)
    assert not (tmp_path / "a" / "b" / "evil.txt").exists()
    extract(_tar_with(tmp_path / "abs.tar", "/abs/evil.txt"), dest)  # absolute names land inside dest
    assert (dest / "abs" / "evil.txt").is_file()


def test_a_full_disk_is_not_called_a_corrupt_archive(tmp_path, monkeypatch):
    import errno

    good = write_tar(tmp_path / "g.tar", {"a/b.jpg": image_bytes()})

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(DataError, match=r"cannot extract .*g\.tar into .*: No space left on device; free some space"):
        extract(good, tmp_path / "dest")


def test_extract_corrupt_archive(tmp_path):
    p = tmp_path / "broken.tar.gz"
    good = write_tar(tmp_path / "g.tar.gz", {"a/b.jpg": image_bytes() * 50})
    p.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match="broken.tar.gz"):
        prepare("office31", tmp_path / "o", [p], progress=False)


def test_real_mnist_t10k_matches_the_published_md5(data_root, tmp_path):
    files = [data_root / "digits" / f for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    if not all(f.is_file() for f in files):
        pytest.skip("MNIST t10k files not in the shared data")
    res = prepare("mnist", tmp_path / "digits", files, domains=["mnist"], progress=False)
    assert res.counts == {"mnist": 10000} and sum("md5 ok" in n for n in res.notes) == 2


def test_real_office31_folder_has_the_published_counts(data_root, tmp_path):
    src = data_root / "office31" / "images"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    res = prepare("office31", tmp_path / "office31", [src], verify_images=False, progress=False)
    assert res.counts == {"amazon": 2817, "dslr": 498, "webcam": 795}
    assert len(load_image_folder(tmp_path / "office31" / "images" / "dslr" / "images", "dslr").classes) == 31


def test_domainnet_from_a_folder_of_zips_and_lists(tmp_path):
    src = tmp_path / "downloads"
    src.mkdir()
    for p in _domainnet_sources(tmp_path):
        p.rename(src / p.name)
    res = prepare("domainnet", tmp_path / "dn", [src], domains=["sketch"], progress=False,
                  expected={"sketch_train": 4, "sketch_test": 2})
    assert res.counts == {"sketch_train": 4, "sketch_test": 2}
    assert sorted(p.name for p in (tmp_path / "dn").iterdir()) == [".prepare-domainnet.lock", "classes.txt", "sketch",
                                                                   "sketch_test.txt", "sketch_train.txt"]
    assert (src / "clipart.zip").is_file()  # the user's folder is left as it was
