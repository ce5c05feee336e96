"""Bad input and faults around labels (issue 11): damaged ledgers in every command, `ledger check`'s
extra checks, strict answers files (CSV quotes, exact labels, strict Label Studio JSON), short output on
huge imports, people's answers never overwritten, missing exports re-written, the page server's
loopback test, idle timeout and malformed bodies."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest
from typer.testing import CliRunner

from adakit.cli import app
from adakit.errors import LedgerError
from adakit.labeling.answers import import_answers, read_answers
from adakit.labeling.run import LabelingRun
from adakit.labeling.server import is_loopback, make_server, serve_in_thread
from adakit.ledger import Ledger

runner = CliRunner()


def _open(run):
    with Ledger(run / "ledger.sqlite") as led:
        return led.open_queries()


def _labels(run):
    with Ledger(run / "ledger.sqlite") as led:
        return led.current_labels()


def _no_traceback(res) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output


# -- 1. a damaged ledger gives a named error in every command that opens it ---------------------------------
_DAMAGE = {
    "zero-byte": lambda data: b"",
    "garbage": lambda data: b"\x00\x13garbage" * 500,
    "truncated": lambda data: data[: len(data) // 3],
}
_COMMANDS = [["import-labels", "{d}", "{d}/a.csv"], ["label", "{d}", "--port", "0"],
             ["export-labelstudio", "{d}", "{d}/t.json"], ["ledger", "check", "{d}"],
             ["query", "{d}", "--budget", "3"], ["resume", "{d}", "--quiet"], ["report", "{d}"]]


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
def test_every_command_names_a_damaged_ledger(demo_run, damage):
    path = demo_run / "ledger.sqlite"
    path.write_bytes(_DAMAGE[damage](path.read_bytes()))
    before = path.read_bytes()
    (demo_run / "a.csv").write_text("sample_id,label\n")
    (demo_run / "config.yaml").write_text("keep: me\n")
    for cmd in _COMMANDS:
        res = runner.invoke(app, [c.format(d=demo_run) for c in cmd])
        _no_traceback(res)
        assert res.exit_code in (1, 2), (cmd, res.output)
        if cmd[0] != "report":  # report reads summary.json only
            assert "ledger.sqlite" in res.output, (cmd, res.output)
    assert path.read_bytes() == before and (demo_run / "config.yaml").read_text() == "keep: me\n"


# -- 2. ledger check: stored config, labels outside the class list ------------------------------------------
def test_ledger_check_finds_a_bad_config_and_labels_outside_the_classes(demo_run):
    q = _open(demo_run)
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 0 and "ledger ok" in res.output and "note" not in res.output, res.output
    with Ledger(demo_run / "ledger.sqlite") as led:
        assert led.classes() == [str(k) for k in range(10)]  # the loop recorded the class list
        with pytest.raises(LedgerError, match="label 12 is not a class index"):
            led.record_labels({q[0].sample_id: 12}, "t")  # the ledger refuses it...
        led.conn.execute("INSERT INTO labels (sample_id, label, annotator, created) VALUES (?, 12, 't', 'now')",
                         (q[0].sample_id,))  # ...so write it as an older adakit or a hand edit could
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 1 and "has label 12, outside the class list 0..9" in res.output, res.output
    with Ledger(demo_run / "ledger.sqlite") as led:
        led.conn.execute("UPDATE labels SET label=3")
        cfg = led.get_meta("config")
        cfg["train"]["batch_size"] = "many"
        led.set_meta("config", cfg)
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 1 and "stored config does not validate" in res.output, res.output
    assert "train.batch_size" in res.output
    with Ledger(demo_run / "ledger.sqlite") as led:
        led.conn.execute("UPDATE meta SET value='{not json' WHERE key='config'")
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    _no_traceback(res)
    assert res.exit_code == 1 and "stored config is not valid JSON" in res.output, res.output
    with Ledger(demo_run / "ledger.sqlite") as led:
        led.conn.execute("DELETE FROM meta WHERE key IN ('classes', 'config')")
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 1 and "no config stored" in res.output and "not checked" in res.output, res.output


# -- 3. answers CSV: stray quotes, exact labels -----------------------------------------------------------
def test_a_stray_quote_is_an_error_with_its_line_and_nothing_is_imported(demo_run, tmp_path):
    q = _open(demo_run)
    rows = [f"{x.sample_id},x,{k % 10}\n" for k, x in enumerate(q[:9])]
    rows[2] = f'{q[2].sample_id},"x,2\n'  # line 4: the quote swallows the rest of the file
    f = tmp_path / "answers.csv"
    f.write_text("sample_id,location,label\n" + "".join(rows))
    rep = import_answers(demo_run, f)
    assert not rep.committed and rep.errors[0][0] == 4 and "never closed" in rep.errors[0][1], rep.errors
    rows[5] = f'{q[5].sample_id},x",5\n'  # line 7 closes it: one row spanning lines 4-7
    f.write_text("sample_id,location,label\n" + "".join(rows))
    rep = import_answers(demo_run, f)
    assert not rep.committed and rep.errors[0][0] == 4 and "lines 4-7" in rep.errors[0][1], rep.errors
    assert _labels(demo_run) == {}
    res = runner.invoke(app, ["import-labels", str(demo_run), str(f)])
    assert res.exit_code == 1 and "line 4" in res.output and "nothing was imported" in res.output, res.output
    f.write_text("sample_id,location,label\n" + "".join(rows[:2]) + f'{q[2].sample_id},"x"y,2\n')
    rep = import_answers(demo_run, f)
    assert not rep.committed and rep.errors[0][0] == 4 and "malformed CSV" in rep.errors[0][1], rep.errors


@pytest.mark.parametrize("label", ["1_0", "0_3", "\u0663", "+3", "3.0", "03", "-0", "3e0", "0x3", "1 0", "\uff13"])
def test_a_label_is_a_class_name_or_plain_decimal_index(demo_run, tmp_path, label):
    q = _open(demo_run)
    f = tmp_path / "a.csv"
    f.write_text(f"sample_id,label\n{q[0].sample_id}, 3 \n{q[1].sample_id},{label}\n", encoding="utf-8")
    rep = import_answers(demo_run, f)
    assert rep.new == 1 and [line for line, _ in rep.errors] == [3], rep.errors
    assert repr(label) in rep.errors[0][1] and "not in the class list" in rep.errors[0][1]
    assert _labels(demo_run) == {q[0].sample_id: 3}


def test_float_labels_in_json_are_rejected(demo_run, tmp_path):
    q = _open(demo_run)
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"sample_id": q[0].sample_id, "label": 2.7},
                             {"sample_id": q[1].sample_id, "label": 2.0},
                             {"sample_id": q[2].sample_id, "label": True},
                             {"sample_id": q[3].sample_id, "label": 4}]))
    rep = import_answers(demo_run, f)
    assert rep.new == 1 and len(rep.errors) == 3 and _labels(demo_run) == {q[3].sample_id: 4}, rep.errors


# -- 4. Label Studio JSON: strict --------------------------------------------------------------------------
def _task(sid: str, choices) -> dict:
    return {"id": 1, "meta": {"sample_id": sid},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": choices}}]}]}


@pytest.mark.parametrize("text,line,what", [
    ('[{"sample_id": "a", "label": "1"}] junk', 1, "extra data"),
    ('[\n{"sample_id": "a", "label": "1"},\n]', 3, "trailing comma"),
    ('[{"sample_id": "a", "label": "1"}]]', 1, "extra data"),
    ('{"tasks": []} {}', 1, "Extra data"),
])
def test_labelstudio_trailing_garbage_or_comma_is_an_error(tmp_path, text, line, what):
    f = tmp_path / "export.json"
    f.write_text(text)
    raw, rep = read_answers(f)
    assert raw == [] and rep.unreadable and rep.errors[0][0] == line and what in rep.errors[0][1], rep.errors
    assert "column" in rep.errors[0][1]


def test_labelstudio_fields_of_unexpected_types_are_named_errors_per_task(demo_run, tmp_path):
    q = [x.sample_id for x in _open(demo_run)]
    tasks = [_task(q[0], ["3"]),
             {"meta": {"sample_id": q[1]}, "annotations": {"result": []}},           # annotations: an object
             {"meta": {"sample_id": q[2]}, "annotations": "3"},                      # annotations: a string
             {"meta": {"sample_id": q[3]}, "annotations": [{"result": 5}]},          # result: a number
             {"meta": {"sample_id": q[4]}, "annotations": [{"result": {"a": 1}}]},   # result: an object
             {"meta": {"sample_id": q[5]}, "annotations": [{"result": [{"type": "choices", "value": ["3"]}]}]},
             _task(q[6], "3"),                                                       # choices: a string
             _task(q[7], {"x": 1}),                                                  # choices: an object
             _task(q[8], [["3"]]),                                                   # choices: nested
             {"meta": {"sample_id": q[9]}, "annotations": [7]},                      # an annotation: a number
             {"sample_id": q[10], "label": {"choices": 3}},                          # JSON-MIN, choices: a number
             {"sample_id": q[11], "label": [{"a": 1}]},                              # JSON-MIN, a list of objects
             _task(q[12], ["4"])]
    f = tmp_path / "export.json"
    f.write_text(json.dumps(tasks, indent=1))
    rep = import_answers(demo_run, f)
    assert rep.new == 2 and len(rep.errors) == 11, rep.errors
    assert all("is this a Label Studio JSON export?" in m for _, m in rep.errors), rep.errors
    assert _labels(demo_run) == {q[0]: 3, q[12]: 4}


def test_deeply_nested_labelstudio_json_is_a_named_error(tmp_path):
    for text in ("[" * 100_000 + "]" * 100_000, '[{"a": ' * 50_000 + "1" + "}]" * 50_000,
                 '{"tasks": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        f = tmp_path / "deep.json"
        f.write_text(text)
        raw, rep = read_answers(f)
        assert raw == [] and rep.unreadable and "nested too deeply" in rep.errors[0][1], rep.errors


# -- 5. huge imports: a short summary, not a line per row --------------------------------------------------
def test_cli_import_summarises_many_notes_and_errors(demo_run, tmp_path):
    q = _open(demo_run)
    f = tmp_path / "big.csv"
    f.write_text("sample_id,label\n" + f"{q[0].sample_id},3\n" * 500 + "".join(f"nope-{i},1\n" for i in range(300)))
    res = runner.invoke(app, ["import-labels", str(demo_run), str(f)])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert sum("repeats line 2" in x for x in lines) == 10, res.output
    assert sum("unknown id 'nope" in x for x in lines) == 10, res.output
    assert "489 more notes (in all: 499 repeated row)" in res.output
    assert "290 more errors (in all: 300 unknown id)" in res.output and "1 new" in res.output
    assert len(lines) < 40


# -- 6. people's answers are never overwritten; a missing export is written again ---------------------------
def test_resume_keeps_the_answers_typed_into_the_queries_csv(demo_run):
    csv_path, json_path = demo_run / "queries" / "round-1.csv", demo_run / "queries" / "round-1.json"
    lines = csv_path.read_text().splitlines()
    assert lines[0].endswith(",label") and len(lines) == 21
    typed = "\n".join([lines[0]] + [f"{x}3" if k < 8 else x for k, x in enumerate(lines[1:])]) + "\n"
    csv_path.write_text(typed)
    twin = json_path.read_text()
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])  # before import-labels
    _no_traceback(res)
    assert "waiting for labels" in res.output and csv_path.read_text() == typed, res.output
    assert json_path.read_text() == twin
    q = _open(demo_run)
    with Ledger(demo_run / "ledger.sqlite") as led:  # two answered on the labelling page meanwhile
        led.record_labels({q[18].sample_id: 1, q[19].sample_id: 2}, "web")
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert "waiting for labels" in res.output and csv_path.read_text() == typed, res.output
    side = demo_run / "queries" / "round-1.open.csv"
    assert len(side.read_text().splitlines()) == 19  # header + the 18 still open
    res = runner.invoke(app, ["import-labels", str(demo_run), str(csv_path)])
    assert res.exit_code == 0 and "8 new" in res.output, res.output


def test_an_untouched_export_is_rewritten_when_the_open_queries_change(demo_run):
    csv_path = demo_run / "queries" / "round-1.csv"
    q = _open(demo_run)
    with Ledger(demo_run / "ledger.sqlite") as led:
        led.record_labels({q[0].sample_id: 1}, "web")
    runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert len(csv_path.read_text().splitlines()) == 20 and q[0].sample_id not in csv_path.read_text()
    assert not (demo_run / "queries" / "round-1.open.csv").exists()


@pytest.mark.parametrize("how", ["resume", "query", "label"])
def test_a_missing_export_of_open_queries_is_written_again(demo_run, how):
    """A kill between recording round 1's queries and writing their CSV: the next command writes it."""
    for suffix in (".csv", ".json"):
        (demo_run / "queries" / f"round-1{suffix}").unlink()
    if how == "label":
        LabelingRun(demo_run, with_model=False).close()
    else:
        cmd = ["resume", str(demo_run), "--quiet"] if how == "resume" else ["query", str(demo_run), "--budget", "3"]
        res = runner.invoke(app, cmd)
        _no_traceback(res)
    rows = (demo_run / "queries" / "round-1.csv").read_text().splitlines()
    assert len(rows) == 21 and {r.split(",")[0] for r in rows[1:]} == {x.sample_id for x in _open(demo_run)}


# -- 7. the page server ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True),
                                       ("localhost", True), ("::1", True), ("[::1]", True),
                                       ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False),
                                       ("192.168.1.20", False), ("example.org", False), ("128.0.0.1", False)])
def test_loopback_hosts(host, loop):
    assert is_loopback(host) is loop


def test_cli_label_does_not_warn_on_loopback_addresses(demo_run, monkeypatch):
    import adakit.labeling.server as server_mod

    class Fake:
        url = "http://x/?token=t"

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    def fake_make_server(run, host="127.0.0.1", **kw):
        server_mod.warn_if_exposed(host)  # as make_server does, before it binds
        return Fake()

    monkeypatch.setattr(server_mod, "make_server", fake_make_server)
    monkeypatch.setattr("adakit.labeling.run.LabelingRun.progress", lambda self: (0, 20))
    for host, warned in (("127.0.0.2", False), ("localhost", False), ("10.1.2.3", True)):
        res = runner.invoke(app, ["label", str(demo_run), "--host", host])
        assert res.exit_code == 0 and ("warning" in res.output) is warned, (host, res.output)
        assert ("other machines can reach this page" in res.output) is warned  # printed once, as a CLI warning
        assert res.output.count("other machines can reach") <= 1


def test_make_server_from_python_warns_when_the_page_is_reachable_from_other_machines(demo_run):
    """The warning was printed by the command line only."""
    import warnings

    from adakit.labeling.server import ExposedServerWarning

    run = LabelingRun(demo_run, with_model=False)
    try:
        with pytest.warns(ExposedServerWarning, match="other machines can reach this page"):
            make_server(run, host="0.0.0.0", port=0).server_close()
        with warnings.catch_warnings():
            warnings.simplefilter("error", ExposedServerWarning)
            make_server(run, host="127.0.0.1", port=0).server_close()
    finally:
        run.close()


@pytest.fixture
def served(demo_run):
    run = LabelingRun(demo_run, with_model=False)
    server = make_server(run, port=0)
    server.request_timeout = 0.5
    serve_in_thread(server)
    yield server, demo_run
    server.shutdown()
    server.server_close()
    run.close()


def _raw(server, data: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection (socket timeout = the test fails)."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


def test_idle_and_half_sent_requests_are_closed(served):
    server, _ = served
    assert _raw(server, b"") == b""                    # connected, said nothing: closed after the timeout
    assert _raw(server, b"GET /api/st") == b""          # half a request line
    head = (f"POST /api/answer HTTP/1.1\r\nHost: x\r\nX-Adakit-Token: {server.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sample")
    reply = _raw(server, head.encode())                 # a body shorter than announced, then silence
    assert reply == b"" or reply.startswith(b"HTTP/1.0 400"), reply


def _post(server, body: bytes, ctype: str = "application/json") -> tuple[int, dict]:
    head = (f"POST /api/answer HTTP/1.1\r\nHost: x\r\nX-Adakit-Token: {server.token}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    reply = _raw(server, head + body)
    status = int(reply.split(b" ", 2)[1])
    return status, json.loads(reply.split(b"\r\n\r\n", 1)[1])


def test_malformed_bodies_get_400_or_413_with_a_json_error(served):
    server, run_dir = served
    sid = _open(run_dir)[0].sample_id
    deep = b"[" * 30_000 + b"]" * 30_000
    for body in (deep, b'{"sample_id": "x", "label": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
                 b'{"sample_id": "\\ud800", "label": 1}', b"\xff\xfe", b'{"sample_id": 1}',
                 json.dumps({"sample_id": sid, "label": 2.0}).encode(),
                 json.dumps({"sample_id": sid, "label": [1]}).encode(),
                 json.dumps({"sample_id": sid, "label": 1, "replaces": {"a": 1}}).encode()):
        status, reply = _post(server, body)
        assert status == 400 and reply["error"], (body[:40], status, reply)
    status, reply = _post(server, b" " * (64 * 1024 + 1))
    assert status == 413 and "at most 65536 bytes" in reply["error"]
    assert _labels(run_dir) == {}
    assert _post(server, json.dumps({"sample_id": sid, "label": 2}).encode())[0] == 200
    with sqlite3.connect(run_dir / "ledger.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 1


def test_commands_that_map_queries_to_files_refuse_changed_data(office_run, tmp_path):
    """A photo added to the target shifts the pool positions the ledger's queries point at: the labelling page
    and the Label Studio export refuse the run before writing anything (they paired ids with the wrong photos),
    as `adakit resume` does. (`import-labels` reads ids against the ledger's queries: it needs no data.)"""
    import shutil

    from adakit.errors import DataError
    from adakit.labeling.labelstudio import export_labelstudio

    first = sorted(p for p in (tmp_path / "office31-mini" / "webcam").iterdir())[0]
    shutil.copy(sorted(first.iterdir())[0].resolve(), first / "aaa_added.jpg")  # a copy (a link is refused)
    shutil.rmtree(office_run / "queries")  # (killed before the export: the page would write it again)
    for call in (lambda: export_labelstudio(office_run, tmp_path / "tasks.json"),
                 lambda: LabelingRun(office_run, with_model=False)):
        with pytest.raises(DataError, match="is not what .* was started with"):
            call()
    assert not (office_run / "queries").exists() and not (tmp_path / "tasks.json").exists()
