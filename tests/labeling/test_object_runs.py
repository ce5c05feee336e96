"""Runs started from Python objects with people answering: the CSV export, `adakit import-labels` (no data
needed: classes and ids come from the ledger) and the labelling page served from Python with the loop."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from adakit.cli import app
from adakit.errors import ConfigError, WaitingForLabels
from adakit.labeling import LabelingRun, import_answers, make_server
from adakit.labeling.server import serve_in_thread
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop

from .test_server import Client

CFG = {"budget": {"total": 6, "rounds": 2}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
       "train": {"warmup_iters": 5, "round_iters": 3, "threads": 1, "batch_size": 8}}
CLASSES = ["red", "green", "blue"]


def _objects():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(60, 5)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)
    return {"source": (xs, xs[:, :3].argmax(1)), "target": (xt, None), "classes": CLASSES, "oracle": "file",
            "show_progress": False}, xt[:, :3].argmax(1)


def _waiting(run_dir):
    objs, yt = _objects()
    loop = ActiveLoop(CFG, run_dir, **objs)
    with pytest.raises(WaitingForLabels, match=r"adakit import-labels .* ActiveLoop.resume\("):
        loop.run()
    return loop, objs, yt


def test_import_labels_on_an_object_run_needs_no_data(tmp_path):
    loop, objs, yt = _waiting(tmp_path / "r")
    loop.ledger.close()
    rows = list(csv.DictReader((tmp_path / "r" / "queries" / "round-1.csv").open()))
    for r in rows:
        r["label"] = CLASSES[yt[int(r["sample_id"].split("/")[1])]]
    rows.append({**rows[0], "sample_id": "target/999"})
    with (tmp_path / "answers.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = CliRunner().invoke(app, ["import-labels", str(tmp_path / "r"), str(tmp_path / "answers.csv")])
    assert res.exit_code == 1, res.output  # one row rejected, the others committed
    assert "line 5: unknown id 'target/999': not one of the run's queried samples" in res.output
    assert "3 new" in res.output and "ActiveLoop.resume(" in res.output
    assert import_answers(tmp_path / "r", tmp_path / "answers.csv").same == 3  # importing again changes nothing
    with pytest.raises(WaitingForLabels, match="round 2"):  # round 1 trained on the answers, round 2 waits
        ActiveLoop.resume(tmp_path / "r", **objs).run()
    with Ledger(tmp_path / "r" / "ledger.sqlite") as led:
        assert led.round_status(1) == "evaluated" and len(led.current_labels()) == 3


def test_semicolon_csv_imports_and_a_mistyped_class_gets_a_suggestion(tmp_path):
    """A spreadsheet in a locale with a decimal comma saves CSV with semicolons; a class name typed with
    other case or a typo is rejected with the class it most likely meant."""
    loop, objs, yt = _waiting(tmp_path / "r")
    loop.ledger.close()
    ids = [r["sample_id"] for r in csv.DictReader((tmp_path / "r" / "queries" / "round-1.csv").open())]
    (tmp_path / "a.csv").write_text(f"sample_id;score;label\n{ids[0]};0,5;blue\n{ids[1]};0,7;Red\n"
                                    f"{ids[2]};0,1;gren\n", encoding="utf-8")
    rep = import_answers(tmp_path / "r", tmp_path / "a.csv")
    assert rep.new == 1 and [line for line, _ in rep.errors] == [3, 4]
    assert "label 'Red' is not in the class list (did you mean 'red'?)" in rep.errors[0][1]
    assert "(did you mean 'green'?)" in rep.errors[1][1]


def test_labelling_page_served_from_python_with_the_loop(tmp_path):
    loop, objs, yt = _waiting(tmp_path / "r")
    res = CliRunner().invoke(app, ["label", str(tmp_path / "r"), "--port", "0"])
    assert res.exit_code != 0 and "LabelingRun(loop=ActiveLoop.resume(" in res.output
    with pytest.raises(ConfigError, match="started from Python objects"):
        LabelingRun(tmp_path / "r")
    run = LabelingRun(loop=loop)
    server = make_server(run, port=0)
    serve_in_thread(server)
    try:
        client = Client(server.url)
        items = client.state()["items"]
        assert len(items) == 3 and all(len(i["suggestions"]) == 3 for i in items)  # the model's top-3
        for i in items:
            code, body = client.answer(i["sample_id"], int(yt[int(i["sample_id"].split("/")[1])]))
            assert code == 200, body
    finally:
        server.shutdown()
        server.server_close()
        run.close()
    with pytest.raises(WaitingForLabels, match="round 2"):
        loop.run()  # the same loop trains on the page's answers and queries round 2
    assert len(loop.ledger.current_labels()) == 3
    loop.ledger.close()


def _image_run_waiting(run_dir):
    """A run on 12×12 grey images held in memory, stopped at round 1's open queries; (loop, target pixels)."""
    from torch import nn

    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, size=(40, 1, 12, 12), dtype=np.uint8)
    xt = rng.integers(0, 256, size=(30, 1, 12, 12), dtype=np.uint8)
    loop = ActiveLoop(CFG, run_dir, source=(xs, np.arange(40) % 3), target=(xt, None), classes=CLASSES,
                      model=nn.Sequential(nn.Flatten(), nn.Linear(144, 8)), oracle="file", show_progress=False)
    with pytest.raises(WaitingForLabels):
        loop.run()
    return loop, xt


def test_images_held_in_memory_are_drawn_for_the_page(tmp_path):
    """Image tensors given from Python (and digit arrays) have no file: the page gets a PNG of the pixels."""
    import io

    from PIL import Image

    loop, xt = _image_run_waiting(tmp_path / "r")
    run = LabelingRun(loop=loop, with_model=False)
    server = make_server(run, port=0)
    serve_in_thread(server)
    try:
        client = Client(server.url)
        item = client.state()["items"][0]
        assert item["image"] is not None
        code, body = client.request("GET", item["image"].split("&token=")[0])
        assert code == 200
        img = Image.open(io.BytesIO(body))
        assert img.format == "PNG" and img.size == (168, 168)  # 12 px enlarged 14 times (>= 160 shown)
        row = int(item["sample_id"].split("/")[1])
        assert np.array_equal(np.asarray(img)[::14, ::14], xt[row, 0])  # the sample's own pixels
        assert client.request("GET", "/api/image?id=target/999")[0] == 404  # never queried
    finally:
        server.shutdown()
        server.server_close()
        run.close()
        loop.ledger.close()


def test_labelstudio_export_writes_images_held_in_memory_as_png(tmp_path):
    """Label Studio needs image files: the export writes each queried in-memory image as a PNG beside the
    tasks and references it (relative to --root, with the URL prefix) like an image file."""
    import io
    import json

    from PIL import Image

    from adakit.labeling.labelstudio import export_labelstudio

    loop, xt = _image_run_waiting(tmp_path / "r")
    out = tmp_path / "ls" / "tasks.json"
    n, cfg = export_labelstudio(tmp_path / "r", out, root=tmp_path, url_prefix="/data/local-files/?d=",
                                domains=loop.domains)
    tasks = json.loads(out.read_text())
    assert n == len(tasks) == 3 and "<Image" in cfg.read_text()
    for task in tasks:
        ref = task["data"]["image"]
        assert ref.startswith("/data/local-files/?d=ls/tasks-images/") and ref.endswith(".png")
        png = tmp_path / ref.split("?d=")[1]
        row = int(task["meta"]["sample_id"].split("/")[1])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.read_bytes())))[::14, ::14], xt[row, 0])
    loop.ledger.close()


def test_png_of_rescales_normalised_images_and_keeps_colour():
    import io

    import torch
    from PIL import Image

    from adakit.labeling.run import png_of

    x = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]], [[1.0, -1.0]]])  # (3, 1, 2): a normalised colour image
    img = Image.open(io.BytesIO(png_of(x)))
    assert img.mode == "RGB" and img.size == (160, 80)  # 2 px wide enlarged 80 times
    a = np.asarray(img)
    assert a[0, 0].tolist() == [0, 128, 255] and a[0, -1].tolist() == [255, 128, 0]  # min..max -> 0..255
