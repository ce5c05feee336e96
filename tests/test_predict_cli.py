"""`adakit predict RUN INPUT --out preds.csv` on tiny feature files and image folders / lists."""

import csv

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

    bad = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.csv"), "--out", str(tmp_path / "q.csv")])
    assert bad.exit_code == 2 and "input not found" in bad.output
    (tmp_path / "new.bin").write_bytes(b"")
    bad = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "new.bin"), "--out", str(tmp_path / "q.csv")])
    assert bad.exit_code == 2 and "unknown input type '.bin'" in bad.output


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
    assert res.exit_code == 2 and "1 listed image(s) not found" in res.output
