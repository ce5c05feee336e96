"""The labelling server: token, validation, path traversal, concurrent clients, SIGKILL mid-session."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from adakit.labeling.run import LabelingRun
from adakit.labeling.server import make_server, serve_in_thread
from adakit.ledger import Ledger


class Client:
    """A minimal HTTP client for one server (one connection per request, like a browser tab may)."""

    def __init__(self, url: str):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.token = u.query.split("token=", 1)[1]

    def request(self, method: str, path: str, body=None, token: bool = True, headers: dict | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            h = {"Content-Type": "application/json"} if body is not None else {}
            if token:
                h["X-Adakit-Token"] = self.token
            h.update(headers or {})
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
            r = conn.getresponse()
            data = r.read()
            ctype = r.getheader("Content-Type") or ""
            return r.status, (json.loads(data) if ctype.startswith("application/json") else data)
        finally:
            conn.close()

    def state(self) -> dict:
        code, body = self.request("GET", "/api/state")
        assert code == 200, body
        return body

    def answer(self, sid: str, label, replaces=None):
        return self.request("POST", "/api/answer", {"sample_id": sid, "label": label, "replaces": replaces})


@pytest.fixture
def served(demo_run):
    run = LabelingRun(demo_run)
    server = make_server(run, port=0)
    serve_in_thread(server)
    yield Client(server.url), demo_run
    server.shutdown()
    server.server_close()
    run.close()


@pytest.fixture
def served_images(office_run):
    run = LabelingRun(office_run)
    server = make_server(run, port=0)
    serve_in_thread(server)
    yield Client(server.url), office_run
    server.shutdown()
    server.server_close()
    run.close()


def _ledger(run_dir: Path):
    with Ledger(run_dir / "ledger.sqlite") as led:
        return led.current_labels(), led.label_rows(), led.check()


def test_state_answers_corrections_and_validation(served):
    c, run_dir = served
    st = c.state()
    assert st["total"] == 20 and st["done"] == 0 and len(st["classes"]) == 10
    it = st["items"][0]
    assert len(it["suggestions"]) == 3 and it["label"] is None
    assert it["image"].startswith("/api/image?id=")  # the demo's 8×8 digit rows are drawn (pixel_shape)
    sid = it["sample_id"]
    assert c.answer(sid, 4) == (200, {"outcome": "new", "label": 4, "done": 1, "total": 20})
    assert c.answer(sid, 4)[1]["outcome"] == "same"  # a retried request changes nothing
    code, body = c.answer(sid, 5)  # a different answer without saying what it corrects
    assert code == 409 and body["current"] == 4
    code, body = c.answer(sid, "5", replaces=4)  # a class name works too
    assert code == 200 and body["outcome"] == "corrected" and body["label"] == 5
    code, body = c.answer(sid, 6, replaces=4)  # stale correction: 4 is no longer the current label
    assert code == 409 and body["current"] == 5
    for bad in (11, -2, "eleven", True, None, 2.5):
        code, body = c.answer(st["items"][1]["sample_id"], bad)
        assert code == 400, (bad, body)
    assert c.answer("digits-shifted/999999", 1)[0] == 404
    assert c.request("POST", "/api/answer", {"label": 1})[0] == 400
    conn = http.client.HTTPConnection(c.host, c.port, timeout=10)
    conn.request("POST", "/api/answer", body=b"{not json", headers={"X-Adakit-Token": c.token,
                                                                      "Content-Type": "application/json"})
    assert conn.getresponse().status == 400
    conn.close()
    big = json.dumps({"sample_id": sid, "label": 1, "note": "x" * 200_000}).encode()
    conn = http.client.HTTPConnection(c.host, c.port, timeout=10)
    conn.request("POST", "/api/answer", body=big, headers={"X-Adakit-Token": c.token,
                                                           "Content-Type": "application/json"})
    r = conn.getresponse()  # the client gets the answer, not a broken pipe
    assert r.status == 413 and "send one answer per request" in json.loads(r.read())["error"]
    conn.close()
    conn = http.client.HTTPConnection(c.host, c.port, timeout=10)
    conn.request("POST", "/api/answer", body=b"sample_id=x&label=1",
                 headers={"X-Adakit-Token": c.token, "Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 415
    conn.close()
    other = st["items"][2]["sample_id"]
    code, body = c.answer(other, 1, replaces=5)  # a correction of a label the sample does not have
    assert code == 409 and body["current"] is None and "the label being replaced is not the current one" in \
        body["error"]
    code, body = c.answer(other, "Fiv")
    assert code == 400 and "is not in the class list" in body["error"]
    labels, rows, problems = _ledger(run_dir)
    assert labels == {sid: 5} and len(rows) == 2 and rows[1]["correction_of"] == rows[0]["id"] and problems == []
    assert rows[0]["annotator"] == "web"


def test_only_open_queries_are_answered_and_a_stopping_server_says_retry(demo_run):
    from adakit.errors import LedgerBusy, NotQueried

    run = LabelingRun(demo_run)
    sid = run.items()[0].sample_id
    with Ledger(demo_run / "ledger.sqlite") as led:  # a query of round 0... none: take a queried id, then close
        queried = [q.sample_id for q in led.queries()]
    assert sid in queried
    with pytest.raises(NotQueried, match="is not an open query of this run .*import-labels --correct"):
        run.answer("digits-shifted/0", 1)
    run.close()
    with pytest.raises(LedgerBusy, match="server is stopping; this answer was not recorded"):
        run.answer(sid, 1)
    assert _ledger(demo_run)[0] == {}


def test_dropping_a_query_closes_it_and_a_later_answer_corrects_it(served):
    """The page's "can't label" sends -1: the query counts as answered (progress), the ledger records the
    drop, and the sample can still get a class later as a correction of the drop."""
    c, run_dir = served
    sid = c.state()["items"][0]["sample_id"]
    assert c.answer(sid, -1) == (200, {"outcome": "new", "label": -1, "done": 1, "total": 20})
    st = c.state()
    assert st["done"] == 1 and next(i for i in st["items"] if i["sample_id"] == sid)["label"] == -1
    code, body = c.answer(sid, 3)  # someone else knows the class, but says nothing of the drop
    assert code == 409 and body["current"] == -1 and body["current_name"] == "drop"
    code, body = c.answer(sid, 3, replaces=-1)
    assert code == 200 and body["outcome"] == "corrected" and body["label"] == 3
    sid2 = st["items"][1]["sample_id"]
    assert c.answer(sid2, "drop")[1]["label"] == -1  # the word works too (no class is named so)
    labels, rows, problems = _ledger(run_dir)
    assert labels == {sid: 3, sid2: -1} and problems == []
    assert [r["label"] for r in rows] == [-1, 3, -1] and rows[1]["correction_of"] == rows[0]["id"]


def test_token_is_required_for_reads_and_writes(served):
    c, run_dir = served
    sid = c.state()["items"][0]["sample_id"]
    assert c.request("GET", "/", token=False)[0] == 403
    assert c.request("GET", "/api/state", token=False)[0] == 403
    assert c.request("GET", "/api/state", token=False, headers={"X-Adakit-Token": "wrong"})[0] == 403
    code, _ = c.request("POST", "/api/answer", {"sample_id": sid, "label": 1}, token=False)
    assert code == 403
    assert c.request("GET", f"/?token={quote(c.token)}", token=False)[0] == 200
    assert _ledger(run_dir)[0] == {}


def test_token_persists_across_restarts(demo_run):
    a = LabelingRun(demo_run, with_model=False)
    b = LabelingRun(demo_run, with_model=False)
    try:
        assert a.token() == b.token() and len(a.token()) >= 20
        assert a.token(renew=True) != b.token(renew=False) or True
        assert LabelingRun(demo_run, with_model=False).token() == a.ledger.get_meta("labeling/token")
    finally:
        a.close()
        b.close()


TRAVERSALS = ["/../../etc/passwd", "/..%2f..%2fetc%2fpasswd", "//etc/passwd", "/etc/passwd",
              "/api/image/../../etc/passwd",
              "/api/image?id=../../etc/passwd", "/api/image?id=/etc/passwd", "/api/image?id=%2Fetc%2Fpasswd",
              "/api/image?id=..%2F..%2F..%2Fetc%2Fpasswd", "/api/image", "/api/image?id=a&id=b",
              "/static/../ledger.sqlite", "/ledger.sqlite", "/api/image?id=../ledger.sqlite"]


def test_path_traversal_gets_404(served_images):
    c, _ = served_images
    for path in TRAVERSALS:
        for token_in_url in (True, False):
            full = path + (("&" if "?" in path else "?") + f"token={quote(c.token)}" if token_in_url else "")
            code, body = c.request("GET", full, token=not token_in_url)
            assert code == 404, (full, body)


def test_images_are_served_by_sample_id_only(served_images):
    c, run_dir = served_images
    st = c.state()
    assert st["total"] == 4 and len(st["classes"]) == 31
    for it in st["items"]:
        code, data = c.request("GET", it["image"], token=False)
        assert code == 200 and data[:3] == b"\xff\xd8\xff"  # a JPEG
        assert it["locator"].endswith(it["sample_id"].split("/")[-1])
    # a sample of the pool that was not queried is not served either
    with Ledger(run_dir / "ledger.sqlite") as led:
        queried = {q.sample_id for q in led.queries()}
    other = next(p.relative_to(run_dir.parent / "office31-mini" / "webcam").as_posix()
                 for p in sorted((run_dir.parent / "office31-mini" / "webcam").rglob("*.jpg"))
                 if p.relative_to(run_dir.parent / "office31-mini" / "webcam").as_posix() not in queried)
    assert c.request("GET", f"/api/image?id={quote(other, safe='')}")[0] == 404


def test_two_clients_at_once_never_lose_or_duplicate(served):
    """Two clients answer every item at the same time, disagreeing on half of them: exactly one answer
    per sample is acknowledged as new, the other gets `same` or 409 naming the winner's label."""
    c, run_dir = served
    items = [i["sample_id"] for i in c.state()["items"]]
    results: dict[int, list] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def worker(k: int) -> None:
        barrier.wait()
        order = items if k == 0 else items[::-1]
        for sid in order:
            label = (items.index(sid) + (k if items.index(sid) % 2 else 0)) % 10
            results[k].append((sid, label, *c.answer(sid, label)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels, rows, problems = _ledger(run_dir)
    assert problems == [] and len(rows) == len(items) == len(labels)
    for sid in items:
        outcomes = [(lab, code, body) for k in (0, 1) for s, lab, code, body in results[k] if s == sid]
        assert len(outcomes) == 2
        new = [o for o in outcomes if o[1] == 200 and o[2]["outcome"] == "new"]
        assert len(new) == 1 and labels[sid] == new[0][0]
        other = next(o for o in outcomes if o is not new[0])
        if other[0] == new[0][0]:
            assert other[1] == 200 and other[2]["outcome"] == "same"
        else:
            assert other[1] == 409 and other[2]["current"] == new[0][0]


def test_many_clients_on_one_sample(served):
    c, run_dir = served
    sid = c.state()["items"][0]["sample_id"]
    out: queue.Queue = queue.Queue()
    barrier = threading.Barrier(8)

    def worker(k):
        barrier.wait()
        out.put((k, *c.answer(sid, k)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res = [out.get() for _ in range(8)]
    winners = [k for k, code, body in res if code == 200]
    assert len(winners) == 1 and all(code == 409 and body["current"] == winners[0] for k, code, body in res
                                     if k != winners[0])
    labels, rows, problems = _ledger(run_dir)
    assert labels == {sid: winners[0]} and len(rows) == 1 and problems == []


def _start_server(run_dir: Path) -> tuple[subprocess.Popen, Client]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "adakit", "label", str(run_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline = time.time() + 180
    seen = []
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if "http://" in line:
            url = line[line.index("http://"):].split()[0]
            return proc, Client(url)
    proc.kill()
    raise AssertionError("the server did not start: " + "".join(seen))


@pytest.mark.slow
def test_sigkill_mid_session_loses_no_acknowledged_answer(demo_run):
    proc, c = _start_server(demo_run)
    acked: dict[str, int] = {}
    try:
        items = [i["sample_id"] for i in c.state()["items"]]
        stop = threading.Event()

        def annotate():  # answers as fast as it can; records only what the server acknowledged
            for k, sid in enumerate(items):
                if stop.is_set():
                    return
                try:
                    code, body = c.answer(sid, k % 10)
                except OSError:
                    return
                if code == 200:
                    acked[sid] = body["label"]

        t = threading.Thread(target=annotate)
        t.start()
        while len(acked) < 6 and t.is_alive():
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # mid-session, while answers are in flight
        proc.wait(timeout=30)
        stop.set()
        t.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 6 <= len(acked) < len(items)
    labels, rows, problems = _ledger(demo_run)
    assert problems == []
    assert all(labels.get(sid) == lab for sid, lab in acked.items())  # every acknowledged answer is there
    assert len(rows) == len(labels)
    # restart: the same URL (token) works, the answers are shown, the rest can be answered
    proc, c2 = _start_server(demo_run)
    try:
        assert c2.token == c.token
        st = c2.state()
        assert st["done"] == len(labels) and {i["sample_id"]: i["label"] for i in st["items"]
                                                  if i["label"] is not None} == labels
        for it in st["items"]:
            if it["label"] is None:
                assert c2.answer(it["sample_id"], 1)[0] == 200
        assert c2.state()["done"] == st["total"]
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    labels, rows, problems = _ledger(demo_run)
    assert problems == [] and len(labels) == len(items) == len(rows)


def test_a_page_left_open_suggests_from_the_model_that_chose_a_new_round(demo_run):
    """The page loaded the run's model once: after `adakit resume` trained round 1 and chose round 2, the open
    page suggested round 2's labels from round 0's model. It reloads the checkpoint when a newer one exists."""
    import pytest

    from adakit.errors import WaitingForLabels
    from adakit.loop import ActiveLoop

    page = LabelingRun(demo_run)
    try:
        first = page.items()
        truth = page.pool.y
        for it in first:
            page.answer(it.sample_id, int(truth[it.pool_index]))
        loop = ActiveLoop.resume(demo_run, show_progress=False)
        with pytest.raises(WaitingForLabels):
            loop.run()  # trains round 1, chooses round 2
        loop.ledger.close()
        new = [i for i in page.items() if i.round == 2]
        fresh = LabelingRun(demo_run)
        try:
            expected = {i.sample_id: i.suggestions for i in fresh.items() if i.round == 2}
        finally:
            fresh.close()
        assert new and {i.sample_id: i.suggestions for i in new} == expected
    finally:
        page.close()


def test_the_page_reads_class_names_and_drop_as_answer_files_do(demo_run):
    """The page matched class names exactly and took any spelling of "drop" as a drop, even with a class of that
    name: " DROP " dropped the sample on the page but chose the class in a CSV."""
    import pytest

    from adakit.errors import DataError
    from adakit.oracle import class_lookup

    page = LabelingRun(demo_run, with_model=False)
    try:
        page.classes = ["keep", "drop", "mug "]
        page._by_name = class_lookup(page.classes)
        assert [page.class_index(v) for v in ("drop", " drop ", "mug", "mug ", -1, 0)] == [1, 1, 2, 2, -1, 0]
        for other in ("DROP", " Drop "):
            with pytest.raises(DataError, match="is not in the class list"):
                page.class_index(other)
        page.classes = ["keep", "mug"]
        page._by_name = class_lookup(page.classes)
        assert page.class_index(" DROP ") == -1
        # an index written as digits, as answer files read it (a script posting {"label": "1"} was refused)
        assert [page.class_index(v) for v in ("1", " 0 ")] == [1, 0]
        for other in ("2", "+1", "1.0", "01"):
            with pytest.raises(DataError, match="is not in the class list"):
                page.class_index(other)
        page.classes = ["3", "1", "x"]  # classes named by digits: the name wins, as in files
        page._by_name = class_lookup(page.classes)
        assert [page.class_index(v) for v in ("1", "3", "2")] == [1, 0, 2]
    finally:
        page.close()


def test_an_answer_waiting_for_a_busy_ledger_does_not_hold_the_page(demo_run, monkeypatch):
    """An answer waiting for another process's write transaction held the page's lock for up to 30 s, so every
    read (the state, images) waited as long. It now waits in short tries without the lock; it is saved once the
    other writer is done."""
    import sqlite3

    import adakit.labeling.run as run_mod

    monkeypatch.setattr(run_mod, "BUSY_WAIT_S", 20.0)
    page = LabelingRun(demo_run, with_model=False)
    other = sqlite3.connect(demo_run / "ledger.sqlite", isolation_level=None)
    try:
        sid = page.items()[0].sample_id
        other.execute("BEGIN IMMEDIATE")  # another process writing (import-labels, resume)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("answer", page.answer(sid, 2)))
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        assert len(page.items()) == 20 and page.current_labels() == {}  # reads are not held
        assert time.monotonic() - t0 < 2.0 and t.is_alive()
        other.execute("COMMIT")
        t.join(10)
        assert result["answer"][0] == "new" and page.current_labels() == {sid: 2}
    finally:
        other.close()
        page.close()
