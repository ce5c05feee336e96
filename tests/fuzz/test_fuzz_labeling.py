"""Property-based fuzzing of what people hand to adakit: answers CSV files, Label Studio JSON exports and
the labelling page's HTTP endpoints. Every input must give a result or an adakit error (a 4xx JSON
reply for the page), never another exception or a dropped connection. Bounded: the file runs in seconds."""

from __future__ import annotations

import http.client
import itertools
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adakit.config import build_config
from adakit.data import load_domains
from adakit.errors import AdakitError
from adakit.labeling.answers import import_answers, read_answers
from adakit.labeling.run import LabelingRun
from adakit.labeling.server import make_server, serve_in_thread
from adakit.ledger import Ledger
from adakit.oracle import resolve_label as _resolve

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_NESTED = settings(FUZZ, max_examples=60)  # nested JSON documents: costlier to generate

RUN = {
    "name": "fuzz", "data": {"format": "demo"},
    "model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8},
    "query": {"strategy": "random"}, "budget": {"total": 20, "rounds": 1},
    "train": {"warmup_iters": 2, "round_iters": 2, "batch_size": 16, "device": "cpu"},
    "oracle": {"kind": "file"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A demo run folder whose round 1 waits for 20 labels (its ledger written directly: no training), its
    domains and its open sample ids. Shared: the imports fuzzed against it are dry runs."""
    run_dir = tmp_path_factory.mktemp("fuzz") / "run"
    cfg = build_config(RUN)
    domains = load_domains(cfg.data, cfg.seed)
    ids = domains.pool.ids[:20].tolist()
    with Ledger(run_dir / "ledger.sqlite") as led:
        led.set_meta("config", cfg.to_dict())
        led.set_classes(domains.classes)
        led.record_queries(1, ids, range(20), [0.5] * 20, [k % 10 for k in range(20)])
    return run_dir, domains, ids


_files = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-files")


def _write(folder: Path, data: bytes, suffix: str) -> Path:
    path = folder / f"f{next(_files)}{suffix}"
    path.write_bytes(data)
    return path


def _read(path: Path):
    """read_answers, which may only ever raise an adakit error."""
    try:
        raw, rep = read_answers(path)
    except AdakitError:
        return None
    assert all(isinstance(a.sample_id, str) and a.sample_id for a in raw)
    assert all(isinstance(line, int) and isinstance(msg, str) for line, msg in rep.errors + rep.notes)
    if rep.unreadable:
        assert raw == [] and rep.errors
    rep.messages(limit=10)
    rep.summary()
    return raw, rep


# -- answers CSV -----------------------------------------------------------------------------------------
_CSV_CHARS = st.sampled_from(list('sample_id,label"\n\r\t ;0123456789x\x00\ufeff\u0663_+.-é'))
_cells = st.one_of(st.text(_CSV_CHARS, max_size=8), st.sampled_from(["0", "9", "10", "+3", "1_0", '"', '""', "3.0"]))


@st.composite
def _csv_bytes(draw) -> bytes:
    header = draw(st.sampled_from(["sample_id,label", "id,answer", "sample_id,location,score,suggested,label",
                                   "label", "", "sample_id\tlabel"]))
    rows = draw(st.lists(st.lists(_cells, min_size=0, max_size=6), max_size=12))
    sep = draw(st.sampled_from([",", "\t", ";"]))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = eol.join([header] + [sep.join(r) for r in rows])
    data = text.encode("utf-8")
    if draw(st.booleans()):  # byte-level damage: cut, insert, BOM, other encodings
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(max_size=6)) + data[pos:]
    return data


@FUZZ
@given(data=st.one_of(_csv_bytes(), st.binary(max_size=200), st.text(_CSV_CHARS, max_size=200).map(str.encode)))
def test_fuzz_answers_csv_reader(scratch, data):
    _read(_write(scratch, data, ".csv"))


@FUZZ
@given(label=st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2), st.sampled_from(["３", "٣", "+3", "1_0", "03", " 3 "])))
def test_fuzz_label_resolution_is_exact(label):
    classes = ["cat", "dog", "7", "emu"] + [f"c{k}" for k in range(8)]
    y = _resolve(label, classes)
    assert y is None or (type(y) is int and 0 <= y < len(classes))
    if isinstance(label, str) and y is not None and label.strip() not in classes:
        assert label.strip().isascii() and label.strip().isdigit() and str(int(label.strip())) == label.strip()


# -- Label Studio JSON --------------------------------------------------------------------------------------
_KEYS = st.sampled_from(["annotations", "completions", "result", "value", "choices", "type", "meta", "data",
                         "sample_id", "label", "choice", "was_cancelled", "id", "tasks"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(allow_nan=False),
                     st.text(max_size=6), st.sampled_from(["choices", "digits-shifted/1", "3", "cat"]))
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(_KEYS | st.text(max_size=4), c,
                                                                                        max_size=4), max_leaves=8)


@st.composite
def _task(draw, ids: list[str]) -> dict:
    """Mostly task-shaped objects whose fields take any JSON type."""
    sid = draw(st.sampled_from(ids) | _json)
    value = draw(st.one_of(st.fixed_dictionaries({"choices": st.lists(_scalars, max_size=3) | _json}), _json))
    result = draw(st.one_of(st.lists(st.fixed_dictionaries({"type": st.just("choices") | _scalars,
                                                            "value": st.just(value)}), max_size=2), _json))
    ann = draw(st.one_of(st.lists(st.fixed_dictionaries({"result": st.just(result)},
                                                        optional={"was_cancelled": _scalars}), max_size=2), _json))
    task = draw(st.sampled_from([{"meta": {"sample_id": sid}, "annotations": ann},
                                 {"data": {"sample_id": sid}, "completions": ann},
                                 {"sample_id": sid, "label": value}, {"sample_id": sid, "choice": result}]))
    return task | draw(st.dictionaries(_KEYS, _json, max_size=2))


@st.composite
def _labelstudio_bytes(draw, ids: list[str]) -> bytes:
    tasks = draw(st.lists(_task(ids) | _json, max_size=6))
    doc = draw(st.sampled_from([tasks, {"tasks": tasks}]))
    text = json.dumps(doc, indent=draw(st.sampled_from([None, 1])))
    mutate = draw(st.sampled_from(["none", "tail", "comma", "cut", "deep"]))
    if mutate == "tail":
        text += draw(st.text(st.sampled_from(list(' ,]}[{"x\n')), min_size=1, max_size=4))
    elif mutate == "comma" and text.endswith("]"):
        text = text[:-1] + ",]"
    elif mutate == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mutate == "deep":
        n = draw(st.integers(500, 5000))
        text = "[" + "[" * n + "]" * n + "," + text[1:] if text.startswith("[") else "[" * n + "]" * n
    return text.encode()


@pytest.mark.parametrize("part", ["read", "import"])
def test_fuzz_labelstudio_reader_and_import(run, scratch, part):
    run_dir, domains, ids = run

    @FUZZ_NESTED
    @given(data=_labelstudio_bytes(ids))
    def check(data):
        path = _write(scratch, data, ".json")
        if part == "read":
            _read(path)
            return
        try:
            rep = import_answers(run_dir, path, dry_run=True, domains=domains)
        except AdakitError:
            return
        assert not rep.committed and rep.new + rep.same + rep.corrected <= len(ids)

    check()


def test_fuzz_csv_import_against_a_run(run, scratch):
    run_dir, domains, ids = run

    @FUZZ
    @given(rows=st.lists(st.tuples(st.sampled_from(ids) | st.text(max_size=5), _cells | st.sampled_from(
        [str(k) for k in range(12)])), max_size=20))
    def check(rows):
        text = "sample_id,label\n" + "".join(f"{s},{y}\n" for s, y in rows)
        path = _write(scratch, text.encode("utf-8", "surrogatepass"), ".csv")
        try:
            rep = import_answers(run_dir, path, dry_run=True, domains=domains)
        except AdakitError:
            return
        assert rep.new <= len(ids) and not rep.committed

    check()


# -- the labelling page's endpoints -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    run_dir, domains, ids = run
    copy = tmp_path_factory.mktemp("fuzz-page") / "run"
    shutil.copytree(run_dir, copy)
    lr = LabelingRun(copy, domains=domains, with_model=False)
    server = make_server(lr, port=0)
    serve_in_thread(server)
    yield server, ids
    server.shutdown()
    server.server_close()
    lr.close()


def _request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()  # a dropped connection raises here and fails the test
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        conn.close()


def _answer_bodies(ids: list[str]):
    obj = st.fixed_dictionaries({"sample_id": st.sampled_from(ids) | _json},
                                optional={"label": _json | st.integers(-2, 12) | st.sampled_from([str(k) for k in
                                                                                                   range(11)]),
                                          "replaces": _json | st.integers(-2, 12)})
    as_json = st.one_of(obj, _json).map(lambda o: json.dumps(o).encode())
    deep = st.integers(100, 30_000).map(lambda n: b'{"sample_id": "x", "label": ' + b"[" * n + b"]" * n + b"}")
    return st.one_of(as_json, as_json, deep, st.binary(max_size=64),
                     st.just(b'{"sample_id": "\\udc80", "label": 1}'))


def test_fuzz_page_endpoints(page):
    server, ids = page

    @FUZZ
    @given(body=_answer_bodies(ids), ctype=st.sampled_from(["application/json", "application/json; charset=utf-8",
                                                            "text/plain"]),
           get=st.one_of(st.just("/api/state"), st.text(max_size=20).map(lambda t: "/api/image?id=" + t),
                         st.sampled_from(["/api/image?id=a&id=b", "/api/image?d=x&id=y", "/nope", "/?x=1"])))
    def check(body, ctype, get):
        tok = {"X-Adakit-Token": server.token}
        status, rtype, data = _request(server, "POST", "/api/answer", body,
                                       {"Content-Type": ctype, "Content-Length": str(len(body)), **tok})
        assert status in (200, 400, 404, 409, 415), (status, data[:200])
        assert rtype.startswith("application/json")
        reply = json.loads(data)
        assert status == 200 or reply["error"]
        from urllib.parse import quote
        status, rtype, data = _request(server, "GET", quote(get, safe="/?=&"), headers=tok)
        assert status in (200, 404), (get, status)

    check()
