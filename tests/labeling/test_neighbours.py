"""Feature-only pools: the page shows a queried row's id and its nearest labelled neighbours (with their
images when the .npz knows them), served by sample id only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from adakit.data.features import load_npz
from adakit.labeling.run import LabelingRun
from adakit.labeling.server import make_server, serve_in_thread

from .conftest import make_run
from .test_browser import _text, _wait, browser  # noqa: F401  (browser: the Chromium fixture)
from .test_server import TRAVERSALS, Client

CLASSES = ["back_pack", "bike", "calculator"]
PER_CLASS = 4


def _write_npz(out: Path, images: Path | None, dom: str, seed: int, with_root: bool) -> None:
    """Random class-shifted features; ``ids`` = real Office-31 image paths relative to their folder."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(len(CLASSES), 8)) * 3
    y = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    feat = (centres[y] + rng.normal(size=(len(y), 8))).astype(np.float32)
    arrays = {"feat": feat, "y": y, "classes": np.asarray(CLASSES)}
    if images is not None:
        folder = images / dom / "images"
        arrays["ids"] = np.asarray([f"{c}/{f.name}" for c in CLASSES
                                    for f in sorted((folder / c).glob("*.jpg"))[:PER_CLASS]])
        if with_root:
            arrays["image_root"] = np.asarray(str(folder))
    np.savez(out, **arrays)


def _feature_run(tmp_path: Path, images: Path | None, with_root: bool = True) -> Path:
    feats = tmp_path / "feats"
    feats.mkdir()
    for seed, dom in enumerate(("amazon", "webcam")):
        _write_npz(feats / f"{dom}.npz", images, dom, seed + 1, with_root)
    values = {
        "name": "office31-feature-rows",
        "data": {"format": "npz", "root": str(feats), "pattern": "{root}/{domain}.npz", "source": "amazon",
                 "target": "webcam"},
        "model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8},
        "query": {"strategy": "margin"},
        "budget": {"total": 4, "rounds": 1},
        "train": {"warmup_iters": 5, "round_iters": 5, "batch_size": 8, "device": "cpu"},
        "oracle": {"kind": "file"},
    }
    return make_run(values, tmp_path / "run")


@pytest.fixture
def office_images(data_root) -> Path:
    images = data_root / "office31" / "images"
    if not images.is_dir():
        pytest.skip(f"{images} not found")
    return images


def _serve(run_dir: Path, twin: bool = False):
    run = LabelingRun(run_dir, with_model=False)
    if twin:  # the second query's row becomes a copy of the first's: once labelled, the first is its nearest
        a, b = (i.pool_index for i in run.items()[:2])
        run.pool.x[b] = run.pool.x[a]
    server = make_server(run, port=0)
    serve_in_thread(server)
    return run, server, Client(server.url)


def _brute_force(run: LabelingRun, labelled: dict[str, int], k: int = 3) -> dict[str, list[tuple[str, str, int]]]:
    """(domain, sample id, label) of each item's k nearest labelled samples, one cosine at a time."""
    src, pool = run.domains.source, run.domains.pool
    bank = [("source", str(src.ids[j]), int(src.y[j]), src.x[j].numpy()) for j in range(len(src))]
    bank += [("pool", str(pool.ids[j]), labelled[str(pool.ids[j])], pool.x[j].numpy())
             for j in range(len(pool)) if str(pool.ids[j]) in labelled]
    out = {}
    for it in run.items():
        q = pool.x[it.pool_index].numpy()
        cos = [(float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v))), d, s, c)
               for d, s, c, v in bank if s != it.sample_id]
        out[it.sample_id] = [(d, s, c) for _, d, s, c in sorted(cos, key=lambda t: -t[0])[:k]]
    return out


def test_npz_ids_and_image_root_give_image_paths(office_images, tmp_path):
    _write_npz(tmp_path / "webcam.npz", office_images, "webcam", 1, with_root=True)
    d = load_npz(tmp_path / "webcam.npz", "webcam")
    assert d.ids[0] == "webcam/0"  # ledger ids unchanged
    assert Path(d.image_path(0)).is_file() and d.image_path(0).endswith(".jpg")
    sub = d.subset(np.array([5, 2]))
    assert sub.image_path(1) == d.image_path(2)
    _write_npz(tmp_path / "plain.npz", office_images, "webcam", 1, with_root=False)
    assert load_npz(tmp_path / "plain.npz", "webcam").image_path(0) is None
    # the exported query CSV's `location` (and the page's locator) is the recorded image, else the row id
    from adakit.ledger import Query
    from adakit.oracle import export_queries

    queries = [Query("webcam/3", 3, 1, 0, 0.5, None)]
    with open(export_queries(d, CLASSES, queries, tmp_path / "q" / "round-1")) as fh:
        assert fh.read().splitlines()[1].split(",")[1] == d.image_path(3)
    assert load_npz(tmp_path / "plain.npz", "webcam").describe(3) == "webcam/3"


def test_feature_rows_show_nearest_labelled_neighbours_with_images(office_images, tmp_path):
    run, server, c = _serve(_feature_run(tmp_path, office_images), twin=True)
    try:
        st = c.state()
        assert st["total"] == 4
        # the feature file records each row's image: the page shows that path and the image, not only the row id
        assert all(it["locator"] != it["sample_id"] and it["locator"].endswith(".jpg") for it in st["items"])
        code, data = c.request("GET", st["items"][0]["image"], token=False)
        assert code == 200 and data[:3] == b"\xff\xd8\xff"
        # label one query: it becomes a neighbour candidate for the others, never for itself
        first = st["items"][0]["sample_id"]
        assert c.answer(first, 1)[0] == 200
        st = c.state()
        want = _brute_force(run, {first: 1})
        for it in st["items"]:
            got = [(n["domain"], n["sample_id"], n["label"]) for n in it["neighbours"]]
            assert got == want[it["sample_id"]]
            for n in it["neighbours"]:
                assert n["name"] == CLASSES[n["label"]] and -1 <= n["similarity"] <= 1
                code, data = c.request("GET", n["image"], token=False)
                assert code == 200 and data[:3] == b"\xff\xd8\xff"  # the neighbour's JPEG
        twin = st["items"][1]["neighbours"][0]
        assert (twin["domain"], twin["sample_id"], twin["label"], twin["name"]) == ("pool", first, 1, "bike")
        assert twin["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert all(n["sample_id"] != first for n in st["items"][0]["neighbours"])  # never its own neighbour
        # only the queries and the neighbours shown are served, by id
        shown = {n["sample_id"] for it in st["items"] for n in it["neighbours"]}
        hidden = next(s for s in run.domains.source.ids if s not in shown)
        for path in (f"/api/image?id={quote(hidden, safe='')}&d=source",
                     f"/api/image?id={quote(next(iter(shown)), safe='')}&d=..%2F..",
                     f"/api/image?id={quote(next(iter(shown)), safe='')}&d=source&d=pool",
                     "/api/image?id=..%2F..%2Fetc%2Fpasswd&d=source", "/api/image?id=%2Fetc%2Fpasswd&d=pool"):
            assert c.request("GET", path)[0] == 404, path
        for path in TRAVERSALS:
            assert c.request("GET", path)[0] == 404, path
    finally:
        server.shutdown()
        server.server_close()
        run.close()


def test_feature_rows_without_image_paths_show_ids_and_classes(tmp_path):
    run, server, c = _serve(_feature_run(tmp_path, None))
    try:
        st = c.state()
        want = _brute_force(run, {})
        for it in st["items"]:
            assert it["image"] is None and len(it["neighbours"]) == 3
            assert [(n["domain"], n["sample_id"], n["label"]) for n in it["neighbours"]] == want[it["sample_id"]]
            assert all(n["image"] is None and n["name"] == CLASSES[n["label"]] for n in it["neighbours"])
            assert all(n["sample_id"].startswith("amazon/") for n in it["neighbours"])
    finally:
        server.shutdown()
        server.server_close()
        run.close()


def test_image_pools_have_no_neighbours(office_run):
    run = LabelingRun(office_run, with_model=False)
    try:
        assert not run.has_feature_pool and run.neighbours() == {}
    finally:
        run.close()


def test_neighbour_thumbnails_in_chromium(browser, office_images, tmp_path):  # noqa: F811
    run, server, c = _serve(_feature_run(tmp_path, office_images))
    try:
        near = c.state()["items"][0]["neighbours"]
        d = browser
        d.get(server.url)
        _wait(d, lambda d: "0 of 4 answered" in _text(d, "progress"), "page loaded")
        # the feature file records the row's image: the page shows it and names its path beside the row id
        _wait(d, lambda d: d.execute_script("const i = document.getElementById('img'); return i.style.display "
                                            "=== 'block' && i.complete && i.naturalWidth > 0"), "query image shown")
        assert ".jpg · webcam/" in _text(d, "meta")
        _wait(d, lambda d: d.execute_script(
            "const f = [...document.querySelectorAll('#near figure.neighbour')];"
            "return f.length === 3 && f.every((x) => { const i = x.querySelector('img');"
            " return i && i.complete && i.naturalWidth > 0; })"), "3 neighbour thumbnails shown")
        captions = [e.text for e in d.find_elements("css selector", "#near figcaption")]
        assert [x.split("\n")[0] for x in captions] == [n["name"] for n in near]
        assert all(n["sample_id"] in x for n, x in zip(near, captions))
        assert d.save_screenshot(str(tmp_path / "neighbours.png"))
    finally:
        server.shutdown()
        server.server_close()
        run.close()
