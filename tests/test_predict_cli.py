"""`adakit predict RUN INPUT --out preds.csv` on tiny feature files and image folders / lists."""

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import adakit
from adakit.cli import app
from adakit.config import build_config
from adakit.loop import ActiveLoop

TINY = {"budget": {"total": 0, "rounds": 0}, "train": {"warmup_iters": 3, "threads": 1, "batch_size": 8},
        "model": {"hidden_dim": 8, "bottleneck_dim": 4}}


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_on_a_feature_file(tmp_path):
    rng = np.random.default_rng(0)
    classes = np.array(["cat", "dog", "eel"])
    for name in ("src", "tgt"):
        np.savez(tmp_path / f"{name}.npz", feat=rng.normal(size=(30, 6)).astype(np.float32),
                 y=np.arange(30) % 3, classes=classes)
    run = tmp_path / "run"
    ActiveLoop(build_config({**TINY, "data": {"format": "npz", "root": str(tmp_path), "source": "src",
                                              "target": "tgt"}}), run, show_progress=False).run()
    x_new = rng.normal(size=(5, 6)).astype(np.float32)
    np.savez(tmp_path / "new.npz", feat=x_new, y=np.full(5, -1), classes=classes)
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.npz"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    assert "5 predictions (3 classes)" in res.output
    rows = _rows(tmp_path / "p.csv")
    assert list(rows[0]) == ["id", "predicted", "probability", "p_cat", "p_dog", "p_eel"]
    probs = adakit.load_run(run).predict_proba(x_new)
    assert [r["predicted"] for r in rows] == classes[probs.argmax(1)].tolist()
    np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in classes] for r in rows], probs, atol=1e-5)
    assert [float(r["probability"]) for r in rows] == pytest.approx(probs.max(1).tolist(), abs=1e-5)
    assert len({r["id"] for r in rows}) == 5
    # the same from Python, without the command line
    model = adakit.load_run(run)
    with pytest.raises(adakit.ConfigError, match="exists; choose another file"):
        model.predict_file(tmp_path / "new.npz", tmp_path / "p.csv")
    assert model.predict_file(tmp_path / "new.npz", tmp_path / "p.csv", overwrite=True) == 5
    assert _rows(tmp_path / "p.csv") == rows
    # features of another data set (classes the run does not have) are named; some of the run's classes are fine
    np.savez(tmp_path / "other.npz", feat=x_new, y=np.full(5, -1), classes=np.array(["car", "bus"]))
    with pytest.warns(RuntimeWarning, match=r"names classes the run does not have \(car, bus\)"):
        model.predict_file(tmp_path / "other.npz", tmp_path / "o.csv")
    np.savez(tmp_path / "some.npz", feat=x_new, y=np.full(5, -1), classes=np.array(["dog"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict_file(tmp_path / "some.npz", tmp_path / "s.csv")
    # a folder as --out is named as such (the advice to add --force led to a crash and a stray .tmp file)
    (tmp_path / "preds").mkdir()
    for force in ([], ["--force"]):
        res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.npz"), "--out",
                                       str(tmp_path / "preds"), *force])
        assert res.exit_code == 2 and "is a folder: give the CSV file to write" in res.output, res.output
    assert not list(tmp_path.glob("preds*.tmp"))

    # --out under a file: named before any work (it was a FileExistsError traceback after the predictions)
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.npz"), "--out",
                                   str(tmp_path / "p.csv" / "o.csv")])
    assert res.exit_code == 2 and "p.csv is a file, not a folder; choose a folder for the predictions" in res.output
    # an unfinished run predicts with its last checkpoint, and says which (it did so silently)
    (run / "summary.json").rename(run / "summary.json.bak")
    with pytest.warns(UserWarning, match=r"is not finished: predicting with its last checkpoint, round 0 of 0"):
        adakit.load_run(run)
    (run / "summary.json.bak").rename(run / "summary.json")

    bad = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.csv"), "--out", str(tmp_path / "q.csv")])
    assert bad.exit_code == 2 and "input not found" in bad.output
    (tmp_path / "new.bin").write_bytes(b"")
    bad = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.bin"), "--out", str(tmp_path / "q.csv")])
    assert bad.exit_code == 2 and "unknown input type '.bin'" in bad.output
    # feature rows as numpy or a spreadsheet saves them: the error says how to make the .npz (it named the suffixes)
    for suffix, load in ((".npy", "np.load"), (".csv", "np.loadtxt")):
        (tmp_path / f"rows{suffix}").write_bytes(b"1,2\n")
        bad = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / f"rows{suffix}"), "--out",
                                       str(tmp_path / "q.csv")])
        text = " ".join(bad.output.split())
        assert bad.exit_code == 2 and f"np.savez('new.npz', feat={load}(" in text, bad.output
        assert f"adakit.load_run(RUN).predict({load}(...))" in text and not (tmp_path / "q.csv").exists()


def test_predict_needs_no_labels_and_takes_empty_or_narrow_feature_files(tmp_path):
    """Rows to predict have no labels: an .npz with only ``feat`` works (it asked for ``y`` and a class code
    before), an empty one writes the header alone, and an svmlight file that never uses the last features is
    widened to the run's width."""
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(1)
    for name in ("src", "tgt"):
        np.savez(tmp_path / f"{name}.npz", feat=rng.normal(size=(30, 6)).astype(np.float32), y=np.arange(30) % 3)
    run = tmp_path / "run"
    ActiveLoop(build_config({**TINY, "data": {"format": "npz", "root": str(tmp_path), "source": "src",
                                              "target": "tgt"}}), run, show_progress=False).run()
    model = adakit.load_run(run)
    x_new = rng.normal(size=(4, 6)).astype(np.float32)
    np.savez(tmp_path / "feat-only.npz", feat=x_new)
    np.savez(tmp_path / "empty.npz", feat=np.zeros((0, 6), np.float32))
    narrow = x_new.copy()
    narrow[:, 4:] = 0  # features 5 and 6 never used: the file is 4 wide
    dump_svmlight_file(narrow[:, :4], np.zeros(4), str(tmp_path / "narrow.svmlight"), zero_based=True)
    expect = {"feat-only.npz": model.predict_proba(x_new), "empty.npz": np.zeros((0, 3)),
              "narrow.svmlight": model.predict_proba(narrow)}
    for name, probs in expect.items():
        res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / name), "--out", str(tmp_path / "p.csv"),
                                       "--force"])
        assert res.exit_code == 0, (name, res.output)
        assert f"{len(probs)} predictions (3 classes)" in res.output, res.output
        rows = _rows(tmp_path / "p.csv")
        assert len(rows) == len(probs)
        got = np.array([[float(r[f"p_{c}"]) for c in model.classes] for r in rows]).reshape(-1, 3)
        np.testing.assert_allclose(got, probs, atol=1e-5)
        assert (tmp_path / "p.csv").read_text().startswith("id,predicted,probability,p_0,p_1,p_2")
    np.savez(tmp_path / "other.npz", X=x_new)
    bad = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "other.npz"), "--out", str(tmp_path / "q.csv")])
    assert bad.exit_code == 2 and "no array 'feat' (the feature rows, N x d); found ['X']" in bad.output


def _image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, dtype=np.uint8)).save(path)


def test_predict_on_an_image_folder_and_an_image_list(tmp_path):
    for dom in ("a", "b"):
        for c, v in (("dark", 20), ("light", 230)):
            for i in range(3):
                _image(tmp_path / "data" / dom / c / f"{i}.png", v + 5 * i)
    cfg = {**TINY, "data": {"format": "image_folder", "root": str(tmp_path / "data"), "source": "a", "target": "b",
                            "image_size": 8, "resize": 8},
           "model": {"backbone": "resnet18", "bottleneck_dim": 4}}
    run = tmp_path / "run"
    ActiveLoop(build_config(cfg), run, show_progress=False).run()
    for i, v in enumerate((10, 240, 120)):
        _image(tmp_path / "new" / ("sub" if i == 2 else "") / f"n{i}.png", v)
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = _rows(out)
    assert [r["id"].rsplit("/", 1)[-1] for r in rows] == ["n0.png", "n1.png", "n2.png"]
    assert all(r["predicted"] in ("dark", "light") for r in rows)
    assert all(abs(float(r["p_dark"]) + float(r["p_light"]) - 1) < 1e-4 for r in rows)
    # load_run takes the image files and PIL images too, read as the run reads its own (it had only arrays, and
    # uint8 images missed the ImageNet mean/std: silently wrong predictions)
    import torchvision.transforms as T
    from PIL import Image

    model = adakit.load_run(run)
    files = [tmp_path / "new" / n for n in ("n0.png", "n1.png", "sub/n2.png")]
    want = np.array([[float(r["p_dark"]), float(r["p_light"])] for r in rows])
    np.testing.assert_allclose(model.predict_proba(files), want, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba([str(f) for f in files]), want, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba([Image.open(f) for f in files]), want, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(files[1]), want[1:2], atol=1e-5)
    geometry = T.Compose([T.Resize(8), T.CenterCrop(8)])
    u8 = np.stack([np.asarray(geometry(Image.open(f).convert("RGB"))).transpose(2, 0, 1) for f in files])
    np.testing.assert_allclose(model.predict_proba(u8), want, atol=1e-5)
    with pytest.raises(adakit.DataError, match="pass the image files or PIL images instead"):
        model.predict(np.asarray(Image.open(files[0]).convert("RGB"))[None])
    with pytest.raises(adakit.DataError, match="1 image file\\(s\\) not found"):
        model.predict([tmp_path / "nope.png"])
    # a folder is named as one (it was "1 image file(s) not found" for a folder that is there)
    with pytest.raises(adakit.DataError, match="new is a folder; pass its image files, or .*predict_file"):
        model.predict(str(tmp_path / "new"))
    # the same images through an image list (paths relative to the list's folder) give the same predictions
    (tmp_path / "new" / "list.txt").write_text("n0.png\nn1.png\n# a comment\nsub/n2.png 1\n")
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new" / "list.txt"), "--out",
                                   str(tmp_path / "q.csv")])
    assert res.exit_code == 0, res.output
    assert [(r["predicted"], r["probability"]) for r in _rows(tmp_path / "q.csv")] == \
        [(r["predicted"], r["probability"]) for r in rows]
    (tmp_path / "new" / "bad.txt").write_text("n0.png\nmissing.png\n")
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new" / "bad.txt"), "--out", str(out)])
    assert res.exit_code == 2 and f"--out {out} exists" in res.output and "--force" in res.output  # kept
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new" / "bad.txt"), "--out", str(out),
                                   "--force"])
    assert res.exit_code == 2 and "bad.txt, line 2: image not found: missing.png" in res.output
    # lists are read as training reads them: paths with spaces, relative to the list's parent folder
    (tmp_path / "new" / "my photos").mkdir()
    (tmp_path / "new" / "n0.png").rename(tmp_path / "new" / "my photos" / "n0.png")
    (tmp_path / "new" / "lists").mkdir()
    (tmp_path / "new" / "lists" / "l.txt").write_text("my photos/n0.png dark\nn1.png\n")
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new" / "lists" / "l.txt"), "--out",
                                   str(tmp_path / "l.csv")])
    assert res.exit_code == 0, res.output
    assert [r["probability"] for r in _rows(tmp_path / "l.csv")] == [r["probability"] for r in rows[:2]]
    # the run folder given as INPUT too (a slip of the command line) predicted its curve.png as the new images
    res = CliRunner().invoke(app, ["predict", str(run), str(run), "--out", str(tmp_path / "run.csv")])
    assert res.exit_code == 2 and "is a run folder, not images to predict" in res.output, res.output
    assert not (tmp_path / "run.csv").exists()
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new" / "n1.png"), "--out",
                                   str(tmp_path / "one.csv")])  # one image
    assert res.exit_code == 0, res.output
    assert [(Path(r["id"]).name, r["probability"]) for r in _rows(tmp_path / "one.csv")] == \
        [("n1.png", rows[1]["probability"])]


def test_predict_reads_svmlight_with_the_indexing_of_the_runs_files(tmp_path):
    """A file to predict whose rows never use feature index 0 (sparse data) was read one-based when the run's
    files were zero-based: every feature shifted by a column, predictions silently wrong. It is read as the
    run's source and target files were; without them, a warning says the file's own indices decide."""
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(2)
    xs = rng.normal(size=(30, 5)).astype(np.float32)
    for name in ("src", "tgt"):
        dump_svmlight_file(xs, np.arange(30) % 3, str(tmp_path / f"{name}.svmlight"), zero_based=True)
    run = tmp_path / "run"
    ActiveLoop(build_config({**TINY, "data": {"format": "svmlight", "root": str(tmp_path), "source": "src",
                                              "target": "tgt"}}), run, show_progress=False).run()
    model = adakit.load_run(run)
    x_new = rng.normal(size=(4, 5)).astype(np.float32)
    x_new[:, 0] = 0  # feature 0 never used in this file
    dump_svmlight_file(x_new, np.zeros(4), str(tmp_path / "new.svmlight"), zero_based=True)
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.svmlight"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = np.array([[float(r[f"p_{c}"]) for c in model.classes] for r in _rows(out)])
    np.testing.assert_allclose(got, model.predict_proba(x_new), atol=1e-5)
    # the run recorded how its files were read: the answer holds when they are gone, also for a .txt name
    for name in ("src", "tgt"):
        (tmp_path / f"{name}.svmlight").unlink()
    (tmp_path / "new.txt").write_bytes((tmp_path / "new.svmlight").read_bytes())
    model = adakit.load_run(run)
    assert model.svmlight_zero_based is True
    for i, name in enumerate(("new.svmlight", "new.txt")):
        model.predict_file(tmp_path / name, tmp_path / f"q{i}.csv")
        got = np.array([[float(r[f"p_{c}"]) for c in model.classes] for r in _rows(tmp_path / f"q{i}.csv")])
        np.testing.assert_allclose(got, model.predict_proba(x_new), atol=1e-5)
    from sklearn.datasets import load_svmlight_file

    sparse = load_svmlight_file(str(tmp_path / "new.svmlight"), n_features=5, zero_based=True)  # (X csr, y)
    np.testing.assert_allclose(model.predict_proba(sparse), model.predict_proba(x_new), atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(sparse[0]), model.predict_proba(x_new), atol=1e-6)
    model.svmlight_zero_based = None  # a run of an adakit that did not record it, its files gone: said, not hidden
    with pytest.warns(RuntimeWarning, match="this file's own indices decide"):
        model.predict_file(tmp_path / "new.svmlight", tmp_path / "q2.csv")
    # a file wider than the model, named as such
    dump_svmlight_file(rng.normal(size=(2, 7)), np.zeros(2), str(tmp_path / "wide.svmlight"), zero_based=True)
    with pytest.raises(adakit.DataError, match=r"wide\.svmlight: has features beyond the 5 that the run's model"):
        model.predict_file(tmp_path / "wide.svmlight", tmp_path / "q3.csv")


def test_predict_refuses_an_out_that_is_the_input_or_in_a_read_only_folder(tmp_path, monkeypatch):
    """--out naming the input itself (an image list, a feature file) replaced it with the predictions under
    --force; an --out folder that cannot be written was found only after every sample had been predicted."""
    import adakit.rundir

    rng = np.random.default_rng(0)
    for name in ("src", "tgt"):
        np.savez(tmp_path / f"{name}.npz", feat=rng.normal(size=(30, 6)).astype(np.float32), y=np.arange(30) % 3)
    run = tmp_path / "run"
    ActiveLoop(build_config({**TINY, "data": {"format": "npz", "root": str(tmp_path), "source": "src",
                                              "target": "tgt"}}), run, show_progress=False).run()
    new = tmp_path / "new.npz"
    np.savez(new, feat=rng.normal(size=(4, 6)).astype(np.float32))
    before = new.read_bytes()
    for out_path in (new, tmp_path / "." / "new.npz"):
        res = CliRunner().invoke(app, ["predict", str(run), str(new), "--out", str(out_path), "--force"])
        assert res.exit_code == 2 and "is the input" in res.output and "another file" in res.output, res.output
    assert new.read_bytes() == before
    with pytest.raises(adakit.ConfigError, match="is the input"):
        adakit.load_run(run).predict_file(new, new, overwrite=True)

    def no_prediction(*a, **k):
        raise AssertionError("predicted before the --out folder was checked")

    monkeypatch.setattr(adakit.run_model.RunModel, "predict_proba", no_prediction)
    os = adakit.rundir.os
    real = os.access
    (tmp_path / "shared").mkdir()  # a read-only folder (root ignores permissions: its os.access says so)
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and not (
        mode & os.W_OK and Path(p).name == "shared"))
    res = CliRunner().invoke(app, ["predict", str(run), str(new), "--out", str(tmp_path / "shared" / "p.csv")])
    assert res.exit_code == 2 and "the folder is not writable; choose a writable folder for the predictions" \
        in res.output, res.output


def test_predict_refuses_features_extracted_otherwise_than_the_runs(tmp_path):
    """`adakit features` of the new images with another model, weights or image size gave features of the run's
    width in another space, and predict used them silently (training refuses such a source and target)."""
    rng = np.random.default_rng(0)
    made = "resnet18, weights imagenet; images resized to 256, centre crop 224"
    for name in ("src", "tgt"):
        np.savez(tmp_path / f"{name}.npz", feat=rng.normal(size=(30, 6)).astype(np.float32), y=np.arange(30) % 3,
                 extractor=made)
    run = tmp_path / "run"
    ActiveLoop(build_config({**TINY, "data": {"format": "npz", "root": str(tmp_path), "source": "src",
                                              "target": "tgt"}}), run, show_progress=False).run()
    x_new = rng.normal(size=(4, 6)).astype(np.float32)
    np.savez(tmp_path / "same.npz", feat=x_new, extractor=made)
    np.savez(tmp_path / "other.npz", feat=x_new, extractor=made.replace("256, centre crop 224", "64, centre crop 64"))
    np.savez(tmp_path / "unrecorded.npz", feat=x_new)
    for _ in range(2):  # the run's record, also when its source file is gone
        for name in ("same", "unrecorded"):
            out = tmp_path / f"{name}.csv"
            res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / f"{name}.npz"), "--out", str(out),
                                           "--force"])
            assert res.exit_code == 0, res.output
        res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "other.npz"), "--out",
                                       str(tmp_path / "o.csv")])
        assert res.exit_code == 2 and "images resized to 64, centre crop 64, but the run" in res.output \
            and "Extract the new images with the run's adakit features options" in res.output, res.output
        assert not (tmp_path / "o.csv").exists()
        if (tmp_path / "src.npz").exists():
            (tmp_path / "src.npz").rename(tmp_path / "src.moved")
    # images given to a feature run are named as such, before they are read (an image list with --list was read
    # and decoded, then refused for its shape; a folder was an "unknown input type ''")
    _image(tmp_path / "photos" / "a.png", 10)
    (tmp_path / "photos" / "l.txt").write_text("a.png\n")
    for args, cmd in (([str(tmp_path / "photos")], f"adakit features {tmp_path / 'photos'} --out new.npz"),
                      ([str(tmp_path / "photos" / "l.txt"), "--list"], "l.txt --list --out new.npz"),
                      ([str(tmp_path / "photos" / "a.png")], "adakit features FOLDER --out new.npz")):
        res = CliRunner().invoke(app, ["predict", str(run), *args, "--out", str(tmp_path / "i.csv")])
        assert res.exit_code == 2 and "images, but the run's model takes feature rows (npz files)" in res.output \
            and cmd in res.output, res.output
