"""Answers from files: CSV validation with line numbers, atomic and idempotent commits, Label Studio
export/import, and the CLI path query -> import-labels -> resume on a tiny demo run with oracle.kind=file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adakit.cli import app
from adakit.config import build_config
from adakit.data import load_domains
from adakit.errors import ConfigError, DataError
from adakit.labeling.answers import import_answers, read_answers
from adakit.labeling.labelstudio import export_labelstudio
from adakit.ledger import Ledger

runner = CliRunner()


def _open(run):
    with Ledger(run / "ledger.sqlite") as led:
        return led.open_queries()


def _truth(run) -> dict[str, int]:
    """Ground-truth label of every pool sample (the demo target keeps its labels)."""
    with Ledger(run / "ledger.sqlite") as led:
        cfg = build_config(led.get_meta("config"))
    pool = load_domains(cfg.data, cfg.seed).pool
    return dict(zip(pool.ids.tolist(), pool.y.tolist()))


def _labels(run):
    with Ledger(run / "ledger.sqlite") as led:
        return led.current_labels(), led.label_rows(), led.check()


def test_malformed_csv_each_error_has_its_line(demo_run, tmp_path):
    q = _open(demo_run)
    a, b, c, d = (x.sample_id for x in q[:4])
    unqueried = next(s for s in _truth(demo_run) if s not in {x.sample_id for x in q})
    f = tmp_path / "answers.csv"
    f.write_text("sample_id,location,score,suggested,label\n"   # 1
                 f"{a},x,0.9,3,3\n"                              # 2 ok (name)
                 "\n"                                            # 3 empty row
                 f"{b},x,0.9,3,seven\n"                          # 4 label outside the class list
                 f"{c},x,0.9,3,12\n"                             # 5 index outside the class list
                 "digits-shifted/100000,x,0,0,1\n"               # 6 unknown id
                 f"{unqueried},x,0,0,1\n"                       # 7 in the pool, never queried
                 f"{d},x,0.9,3,4\n"                              # 8 ok ...
                 f"{d},x,0.9,3,5\n"                              # 9 ... conflicts with line 8: both rejected
                 f"{a},x,0.9,3,3\n"                              # 10 duplicate of line 2, same answer: counted once
                 ",,,,\n"                                        # 11 empty row
                 ",x,0.9,3,1\n"                                  # 12 no sample id
                 f"{q[5].sample_id},x,0.9,3,\n",                 # 13 unanswered: skipped
                 encoding="utf-8")
    rep = import_answers(demo_run, f)
    lines = {line: msg for line, msg in rep.errors}
    assert sorted(lines) == [3, 4, 5, 6, 7, 9, 11, 12], rep.errors
    assert "empty row" in lines[3] and "empty row" in lines[11]
    assert "'seven' is not in the class list" in lines[4] and "'12' is not in the class list" in lines[5]
    assert "unknown id" in lines[6] and "never queried" in lines[7]
    assert "conflicts with line 8" in lines[9] and "no sample_id" in lines[12]
    assert [n for n, _ in rep.notes] == [10]
    assert (rep.new, rep.same, rep.unanswered, rep.committed) == (1, 0, 1, True)
    labels, rows, problems = _labels(demo_run)
    assert labels == {a: 3} and len(rows) == 1 and problems == []


def test_reimport_is_idempotent_and_names_and_indices_both_work(demo_run, tmp_path):
    q = _open(demo_run)
    f = tmp_path / "a.csv"
    f.write_text("sample_id,label\n" + "".join(f"{x.sample_id},{k % 10}\n" for k, x in enumerate(q[:6])))
    first = import_answers(demo_run, f)
    assert (first.new, first.same, first.ok) == (6, 0, True)
    again = import_answers(demo_run, f)
    assert (again.new, again.same, again.corrected, again.ok) == (0, 6, 0, True)
    labels, rows, problems = _labels(demo_run)
    assert len(labels) == 6 and len(rows) == 6 and problems == []


def test_conflict_with_ledger_needs_correct_flag(demo_run, tmp_path):
    q = _open(demo_run)
    sid = q[0].sample_id
    (tmp_path / "a.csv").write_text(f"sample_id,label\n{sid},1\n")
    (tmp_path / "b.csv").write_text(f"sample_id,label\n{sid},2\n")
    assert import_answers(demo_run, tmp_path / "a.csv").new == 1
    rep = import_answers(demo_run, tmp_path / "b.csv")
    assert rep.errors and rep.errors[0][0] == 2 and "--correct" in rep.errors[0][1]
    assert _labels(demo_run)[0][sid] == 1
    rep = import_answers(demo_run, tmp_path / "b.csv", correct=True)
    assert rep.corrected == 1
    labels, rows, problems = _labels(demo_run)
    assert labels[sid] == 2 and rows[1]["correction_of"] == rows[0]["id"] and problems == []


def test_wrong_encoding_is_reported_with_its_line_and_nothing_is_written(demo_run, tmp_path):
    q = _open(demo_run)
    f = tmp_path / "latin1.csv"
    f.write_bytes(f"sample_id,label\n{q[0].sample_id},1\n{q[1].sample_id},caf\xe9\n".encode("latin-1"))
    rep = import_answers(demo_run, f)
    assert rep.errors[0][0] == 3 and "not UTF-8" in rep.errors[0][1] and not rep.committed
    f16 = tmp_path / "utf16.csv"
    f16.write_bytes(f"sample_id,label\n{q[0].sample_id},1\n".encode("utf-16"))
    rep = import_answers(demo_run, f16)
    assert "UTF-16" in rep.errors[0][1] and not rep.committed
    f16.write_bytes(f"sample_id,label\n{q[0].sample_id},1\n".encode("utf-16-le"))  # no byte-order mark
    rep = import_answers(demo_run, f16)
    assert "UTF-16" in rep.errors[0][1] and not rep.committed
    assert _labels(demo_run)[0] == {}
    bom = tmp_path / "bom.csv"  # Excel's "CSV UTF-8" starts with a BOM: accepted
    bom.write_bytes(f"sample_id,label\n{q[0].sample_id},1\n".encode("utf-8-sig"))
    assert import_answers(demo_run, bom).new == 1


def test_a_spreadsheet_workbook_is_named_as_such(demo_run, tmp_path):
    import zipfile

    book = tmp_path / "answers.xlsx"
    with zipfile.ZipFile(book, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    rep = import_answers(demo_run, book)
    assert rep.unreadable and not rep.committed and "spreadsheet workbook" in rep.errors[0][1]
    assert "'CSV UTF-8'" in rep.errors[0][1] and _labels(demo_run)[0] == {}


def test_header_is_required(demo_run, tmp_path):
    f = tmp_path / "noheader.csv"
    f.write_text("digits-shifted/1,3\n")
    rep = import_answers(demo_run, f)
    assert rep.errors[0][0] == 1 and "header" in rep.errors[0][1]


def test_atomic_commit_when_the_ledger_refuses(demo_run, tmp_path, monkeypatch):
    """A label that changes between validation and commit (another writer) rolls back every row."""
    q = _open(demo_run)
    f = tmp_path / "a.csv"
    f.write_text("sample_id,label\n" + "".join(f"{x.sample_id},1\n" for x in q[:5]))
    real = Ledger.record_labels

    def racing(self, labels, annotator, correction=False):
        with Ledger(self.path) as other:  # the labelling page answers q[3] differently meanwhile
            other.answer(q[3].sample_id, 2, "web")
        return real(self, labels, annotator, correction)

    monkeypatch.setattr(Ledger, "record_labels", racing)
    rep = import_answers(demo_run, f)
    assert not rep.committed and "nothing was imported" in rep.errors[0][1]
    assert _labels(demo_run)[0] == {q[3].sample_id: 2}


def test_labelstudio_roundtrip(demo_run, tmp_path):
    q = _open(demo_run)
    out = tmp_path / "tasks.json"
    n, cfg = export_labelstudio(demo_run, out)
    tasks = json.loads(out.read_text())
    assert n == len(q) == len(tasks)
    assert {t["meta"]["sample_id"] for t in tasks} == {x.sample_id for x in q}
    assert all("image" in t["data"] and t["predictions"][0]["result"][0]["type"] == "choices" for t in tasks)
    assert all(Path(t["data"]["image"]).is_file() for t in tasks)  # the demo's 8×8 digit rows, drawn as PNG
    assert '<Choices name="label" toName="image"' in cfg.read_text()
    # what Label Studio's JSON export gives back: tasks with annotations (+ one cancelled, one unanswered)
    exported = []
    for k, t in enumerate(tasks[:5]):
        ann = [{"id": k, "was_cancelled": False, "result": [
            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [str(k)]}}]}]
        if k == 3:
            ann = [{"was_cancelled": True, "result": ann[0]["result"]}]
        exported.append({"id": 100 + k, "data": t["data"], "meta": t["meta"], "annotations": ann})
    exported.append({"id": 200, "data": {"text": "?"}, "annotations": []})  # no sample id
    exported.append({"id": 201, "data": tasks[5]["data"], "annotations": [  # two annotators disagree
        {"result": [{"type": "choices", "value": {"choices": ["1"]}}]},
        {"result": [{"type": "choices", "value": {"choices": ["2"]}}]}]})
    exp = tmp_path / "export.json"
    exp.write_text(json.dumps(exported, indent=2))
    rep = import_answers(demo_run, exp)
    assert (rep.new, rep.unanswered) == (4, 1), rep
    bad = dict(rep.errors)
    text = exp.read_text().splitlines()
    assert len(bad) == 2 and all(text[line - 1].strip() == "{" for line in bad)  # the line each task starts on
    labels = _labels(demo_run)[0]
    assert labels == {tasks[k]["meta"]["sample_id"]: k for k in (0, 1, 2, 4)}
    assert import_answers(demo_run, exp).new == 0  # idempotent
    # JSON-MIN export
    mini = tmp_path / "min.json"
    mini.write_text(json.dumps([{"id": 1, "sample_id": tasks[6]["data"]["sample_id"], "label": "7"},
                                {"id": 2, "sample_id": tasks[7]["data"]["sample_id"], "label": "drop"}]))
    assert import_answers(demo_run, mini).new == 2  # the config's "drop" choice drops the query
    assert _labels(demo_run)[0][tasks[7]["data"]["sample_id"]] == -1
    # a JSON-MIN export whose Choices tag was renamed: each annotated task is an error naming the key, not
    # "without a label (skipped)"; a task nobody annotated stays unanswered
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps([
        {"id": 3, "sample_id": tasks[8]["data"]["sample_id"], "class": "5", "annotator": 1, "annotation_id": 9,
         "lead_time": 2.5, "created_at": "2026-01-01T00:00:00Z"},
        {"id": 4, "sample_id": tasks[9]["data"]["sample_id"]}]))
    rep = import_answers(demo_run, renamed)
    assert (rep.new, rep.unanswered, len(rep.errors)) == (0, 1, 1), rep
    assert "no 'label' field (it holds 'class': was the Choices tag renamed?)" in rep.errors[0][1]
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"id": 1,\n  "data": }\n]')
    rep = read_answers(broken)[1]
    assert rep.errors[0][0] == 3 and "not valid JSON" in rep.errors[0][1]


def test_labelstudio_export_of_images(office_run, tmp_path):
    out = tmp_path / "tasks.json"
    root = tmp_path / "office31-mini"
    export_labelstudio(office_run, out, root=root, url_prefix="/data/local-files/?d=")
    tasks = json.loads(out.read_text())
    assert len(tasks) == 4
    for t in tasks:
        assert t["data"]["image"].startswith("/data/local-files/?d=webcam/")
        assert t["data"]["image"].endswith(t["meta"]["sample_id"].split("/")[-1])
    assert "<Image" in out.with_name("tasks.label-config.xml").read_text()
    with pytest.raises(ConfigError, match="exist.s. .a Label Studio export may hold annotations"):
        export_labelstudio(office_run, out)  # (the library replaced it silently; only the CLI refused)
    export_labelstudio(office_run, out, overwrite=True)
    out.unlink()  # an edited labelling setup beside a new tasks file is kept too
    with pytest.raises(ConfigError, match="tasks.label-config.xml exist"):
        export_labelstudio(office_run, out)
    with pytest.raises(ConfigError, match="is a folder"):
        export_labelstudio(office_run, tmp_path, overwrite=True)
    export_labelstudio(office_run, out, overwrite=True)
    assert all(json.loads(out.read_text())[0]["data"]["image"].startswith("/") for _ in [0])


def test_cli_query_import_resume_end_to_end(demo_run, tmp_path):
    """oracle.kind=file: answer round 1 by CSV, resume trains and queries round 2, answer it, resume finishes;
    then `adakit query --budget` adds a round beyond the schedule and resume trains on it too."""
    truth = _truth(demo_run)

    def answer_round(k: int) -> None:
        csv_path = demo_run / "queries" / f"round-{k}.csv"
        rows = csv_path.read_text().splitlines()
        header, body = rows[0], rows[1:]
        assert header == "sample_id,location,score,suggested,label"
        filled = tmp_path / f"answered-{k}.csv"
        filled.write_text("\n".join([header] + [r + str(truth[r.split(",")[0]]) for r in body]) + "\n")
        res = runner.invoke(app, ["import-labels", str(demo_run), str(filled)])
        assert res.exit_code == 0, res.output
        assert f"{len(body)} new" in res.output
        res = runner.invoke(app, ["import-labels", str(demo_run), str(filled)])
        assert res.exit_code == 0 and "0 new" in res.output

    answer_round(1)
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert "round 1: 20 labels" in res.output and "waiting for labels" in res.output, res.output
    answer_round(2)
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert res.exit_code == 0 and "round 2: 40 labels" in res.output and "final target accuracy" in res.output

    res = runner.invoke(app, ["query", str(demo_run), "--budget", "5"])
    assert res.exit_code == 0 and "round 3: 5 queries" in res.output, res.output
    data = json.loads((demo_run / "queries" / "round-3.json").read_text())
    assert len(data) == 5 and all(d["suggested"] != "" for d in data)
    with Ledger(demo_run / "ledger.sqlite") as led:
        assert len(led.open_queries(3)) == 5 and led.round_status(3) == "queried"
    res = runner.invoke(app, ["query", str(demo_run), "--budget", "5"])
    assert res.exit_code == 2 and "already queried (5 of its queries still open); answer them" in res.output
    answer_round(3)
    res = runner.invoke(app, ["query", str(demo_run), "--budget", "5"])  # (it said: 0 still open; answer them)
    assert res.exit_code == 2 and "all its queries are answered; `adakit resume" in " ".join(res.output.split())
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert res.exit_code == 0 and "round 3: 45 labels" in res.output, res.output
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 0 and "ledger ok (45 queries, 45 labelled, 0 corrections)" in res.output


def test_dropped_rows_close_the_round_and_are_never_queried_again(demo_run, tmp_path):
    """`drop` in the label column: the round closes with those samples unlabelled, training and the label
    counts leave them out, the next round does not query them, and `ledger check` counts them."""
    truth = _truth(demo_run)
    csv_path = demo_run / "queries" / "round-1.csv"
    header, *body = csv_path.read_text().splitlines()
    ids = [r.split(",")[0] for r in body]
    filled = tmp_path / "answered.csv"
    filled.write_text("\n".join([header] + [r + ("drop" if k == 0 else "Drop" if k == 1 else str(truth[i]))
                                            for k, (r, i) in enumerate(zip(body, ids))]) + "\n")
    res = runner.invoke(app, ["import-labels", str(demo_run), str(filled)])
    assert res.exit_code == 0 and "20 new" in res.output, res.output
    assert _labels(demo_run)[0][ids[0]] == -1 and _labels(demo_run)[2] == []
    wrong = tmp_path / "wrong.csv"  # a later file disagreeing with a drop is refused like any other change
    wrong.write_text(f"sample_id,label\n{ids[0]},3\n{ids[2]},drop\n")
    rep = import_answers(demo_run, wrong)
    msgs = " ".join(m for _, m in rep.errors)
    assert rep.new == rep.corrected == 0 and len(rep.errors) == 2
    assert "already labelled 'drop'" in msgs and "the file says 'drop'" in msgs
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert "round 1: 18 labels" in res.output and "waiting for labels" in res.output, res.output
    with Ledger(demo_run / "ledger.sqlite") as led:
        round2 = {q.sample_id for q in led.queries(2)}
        assert len(round2) == 20 and not round2 & set(ids) and led.dropped_pool() == [
            q.pool_index for q in led.queries(1)[:2]]
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 0 and "(40 queries, 18 labelled, 2 dropped (nobody could label them), 0 corrections)" \
        in res.output, res.output
    export_labelstudio(demo_run, tmp_path / "tasks.json")  # annotators there can drop too
    assert '<Choice value="drop"' in (tmp_path / "tasks.label-config.xml").read_text()


def test_cli_ledger_export_writes_current_labels_or_their_history(demo_run, tmp_path):
    import csv

    ids = [q.sample_id for q in _open(demo_run)]
    first = tmp_path / "a.csv"
    first.write_text(f"sample_id,label\n{ids[0]},3\n{ids[1]},drop\n{ids[2]},5\n")
    second = tmp_path / "b.csv"
    second.write_text(f"sample_id,label\n{ids[2]},6\n")
    assert import_answers(demo_run, first).new == 3 and import_answers(demo_run, second, correct=True).corrected == 1
    out = tmp_path / "labels.csv"
    res = runner.invoke(app, ["ledger", "export", str(demo_run), str(out)])
    assert res.exit_code == 0 and "3 answered queries (1 dropped)" in res.output, res.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["sample_id"], r["label"], r["class"]) for r in rows] == [(ids[0], "3", "3"), (ids[1], "-1", "drop"),
                                                                        (ids[2], "6", "6")]
    assert all(r["round"] == "1" and r["annotator"] == "file:" + ("b.csv" if r["label"] == "6" else "a.csv")
               for r in rows)
    res = runner.invoke(app, ["ledger", "export", str(demo_run), str(out), "--history"])
    assert res.exit_code == 2 and "exists" in res.output  # never replaced unless asked
    res = runner.invoke(app, ["ledger", "export", str(demo_run), str(out), "--history", "--force"])
    rep = import_answers(demo_run, out)  # every label row: refused as a whole, with what to import instead
    assert not rep.committed and "ledger export --history" in rep.errors[0][1] and "default export" in rep.errors[0][1]
    rows = list(csv.DictReader(out.open()))
    assert res.exit_code == 0 and [(r["label"], r["corrects"]) for r in rows] == [("3", ""), ("-1", ""), ("5", ""),
                                                                                 ("6", "5")]


def test_cli_import_reports_errors_with_exit_code_1(demo_run, tmp_path):
    q = _open(demo_run)
    f = tmp_path / "a.csv"
    f.write_text(f"sample_id,label\n{q[0].sample_id},3\nnope,1\n")
    res = runner.invoke(app, ["import-labels", str(demo_run), str(f)])
    assert res.exit_code == 1 and "line 3: unknown id 'nope'" in res.output and "1 new" in res.output
    res = runner.invoke(app, ["import-labels", str(demo_run), str(f), "--dry-run"])
    assert "dry run" in res.output and "0 new, 1 unchanged" in res.output


def test_an_earlier_runs_labels_answer_the_queries_they_hold_with_skip_unqueried(demo_run, tmp_path):
    """Starting a run again (another lr, a diverged model) must not ask people twice: an earlier run's ledger
    export, imported with --skip-unqueried, answers the open queries it holds; its rows for samples this run has not
    queried (yet) are counted and skipped, not rejected (exit 0); without the flag they are errors, as before.
    Other checks stay: a label outside the class list is still rejected."""
    q = _open(demo_run)
    unqueried = [s for s in _truth(demo_run) if s not in {x.sample_id for x in q}][:2]
    f = tmp_path / "earlier.csv"
    f.write_text("sample_id,label\n" + f"{q[0].sample_id},3\n{q[1].sample_id},4\n"
                 + "".join(f"{s},1\n" for s in unqueried) + "digits-shifted/100000,2\n")
    res = runner.invoke(app, ["import-labels", str(demo_run), str(f), "--skip-unqueried"])
    assert res.exit_code == 0, res.output
    assert "2 new, 0 unchanged, 0 corrected; 3 for samples not queried (skipped)" in " ".join(res.output.split())
    assert _labels(demo_run)[0] == {q[0].sample_id: 3, q[1].sample_id: 4}
    rep = import_answers(demo_run, f)  # without the flag: rejected, as before
    assert (rep.same, rep.unqueried, len(rep.errors)) == (2, 0, 3)
    (tmp_path / "bad.csv").write_text(f"sample_id,label\n{q[2].sample_id},seven\n{unqueried[0]},1\n")
    rep = import_answers(demo_run, tmp_path / "bad.csv", skip_unqueried=True)
    assert rep.unqueried == 1 and len(rep.errors) == 1 and "'seven' is not in the class list" in rep.errors[0][1]


def test_cli_ledger_check_finds_problems(demo_run):
    from adakit.ledger import check_run

    q = _open(demo_run)
    fine = check_run(demo_run)  # the same check from Python (its extras were the command line's only)
    assert fine.ok and (fine.queries, fine.labelled, fine.dropped, fine.corrections) == (20, 0, 0, 0)
    with Ledger(demo_run / "ledger.sqlite") as led:
        led.record_labels({q[0].sample_id: 1}, "t")
        led.conn.execute("DROP INDEX one_first_label")  # a damaged ledger: a second first answer
        led.conn.execute("INSERT INTO labels (sample_id, label, annotator, created) VALUES (?, 2, 't', 'now')",
                         (q[0].sample_id,))
    res = runner.invoke(app, ["ledger", "check", str(demo_run)])
    assert res.exit_code == 1 and "without a correction record" in res.output
    bad = check_run(demo_run)
    assert not bad.ok and any("without a correction record" in p for p in bad.problems)
    (demo_run / "ledger.sqlite").write_bytes(b"not a database" * 100)
    assert "is not an SQLite file" in check_run(demo_run).problems[0]  # a problem, not an exception


@pytest.mark.parametrize("cmd", [["query", "{d}", "--budget", "3"], ["import-labels", "{d}", "{d}/x.csv"],
                                 ["ledger", "check", "{d}"], ["export-labelstudio", "{d}", "{d}/t.json"]])
def test_cli_on_a_folder_that_is_not_a_run(tmp_path, cmd):
    (tmp_path / "x.csv").write_text("sample_id,label\n")
    res = runner.invoke(app, [c.format(d=tmp_path) for c in cmd])
    assert res.exit_code == 2 and "not a run folder" in res.output, res.output


def test_the_json_twin_of_the_queries_can_be_filled_and_imported(demo_run, tmp_path):
    rows = json.loads((demo_run / "queries" / "round-1.json").read_text())
    assert len(rows) == 20 and all(r["label"] == "" for r in rows)
    for k, r in enumerate(rows[:7]):
        r["label"] = r["suggested"] if k % 2 else str(k % 10)
    filled = tmp_path / "round-1.json"
    filled.write_text(json.dumps(rows, indent=1))
    res = runner.invoke(app, ["import-labels", str(demo_run), str(filled)])
    assert res.exit_code == 0 and "7 new" in res.output and "13 without a label" in res.output, res.output


def test_cli_export_labelstudio(demo_run, tmp_path):
    out = tmp_path / "ls" / "tasks.json"
    res = runner.invoke(app, ["export-labelstudio", str(demo_run), str(out)])
    assert res.exit_code == 0 and "20 tasks" in res.output, res.output
    assert len(json.loads(out.read_text())) == 20 and (tmp_path / "ls" / "tasks.label-config.xml").is_file()
    res = runner.invoke(app, ["export-labelstudio", str(demo_run), str(out)])  # it may hold annotations now
    assert res.exit_code == 2 and "exist(s)" in res.output and "--force" in res.output, res.output
    assert runner.invoke(app, ["export-labelstudio", str(demo_run), str(out), "--force"]).exit_code == 0


def test_a_ledger_export_imports_back_exactly_with_classes_named_by_numbers(tmp_path):
    """Label codes as class names (as in `.mat` files): the export's label column is the class index, its class
    column the name; importing it reads the index, so no label moves to another class."""
    import csv
    import shutil

    import numpy as np

    from adakit.errors import WaitingForLabels
    from adakit.loop import ActiveLoop

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(60, 5)).astype(np.float32)
    cfg = {"budget": {"total": 6, "rounds": 2}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
           "train": {"warmup_iters": 3, "round_iters": 3, "threads": 1, "batch_size": 8}}
    run, copy = tmp_path / "run", tmp_path / "copy"
    with pytest.raises(WaitingForLabels):
        ActiveLoop(cfg, run, source=(xs, rng.integers(0, 3, 60)), target=(xs + 0.1, None), classes=["2", "3", "1"],
                   oracle="file", show_progress=False).run()
    shutil.copytree(run, copy)
    shutil.copytree(run, tmp_path / "copy2")
    ids = [q.sample_id for q in _open(run)]
    answers = tmp_path / "answers.csv"
    answers.write_text(f"sample_id,label\n{ids[0]},1\n{ids[1]},2\n{ids[2]},drop\n")  # names
    assert runner.invoke(app, ["import-labels", str(run), str(answers)]).exit_code == 0
    assert _labels(run)[0] == {ids[0]: 2, ids[1]: 0, ids[2]: -1}
    out = tmp_path / "labels.csv"
    assert runner.invoke(app, ["ledger", "export", str(run), str(out)]).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["label"], r["class"]) for r in rows] == [("2", "1"), ("0", "2"), ("-1", "drop")]
    res = runner.invoke(app, ["import-labels", str(copy), str(out)])
    assert res.exit_code == 0 and "3 new" in res.output, res.output
    assert _labels(copy)[0] == _labels(run)[0]
    assert "trains on them" in res.output  # the round's three queries are all answered (one dropped)
    # an edited export whose two columns disagree is refused, row by row, nothing else written
    edited = tmp_path / "edited.csv"
    text = out.read_text().splitlines()
    first = text[1].split(",")
    first[4] = "3"  # the class column says "3" (index 1); the label column still says 2 ("1")
    second = text[2].split(",")
    second[3] = ""  # the label cell cleared, the class cell kept: the name decides
    edited.write_text("\n".join([text[0], ",".join(first), ",".join(second)]) + "\n")
    rep = import_answers(tmp_path / "copy2", edited)
    assert [m for _, m in rep.errors] == [f"{ids[0]!r}: label 2 (class '1') and class '3' disagree; in a file with a "
                                          "'class' column the label column holds the class index: change both, or "
                                          "clear one"]
    assert rep.new == 1 and _labels(tmp_path / "copy2")[0] == {ids[1]: 0}


def test_answers_typed_into_a_round_file_saved_by_a_spreadsheet_are_kept(demo_run, tmp_path):
    """A round's CSV saved with semicolons, tabs or another header may hold answers that the export check cannot
    read: it is kept, and the open queries go to round-K.open.csv."""
    q = _open(demo_run)
    path = demo_run / "queries" / "round-1.csv"
    saved = "Sample_ID;Label\n" + "".join(f"{x.sample_id};{k}\n" for k, x in enumerate(q[:5])) + \
        "".join(f"{x.sample_id};\n" for x in q[5:])
    path.write_text(saved)
    res = runner.invoke(app, ["resume", str(demo_run), "--quiet"])
    assert res.exit_code == 0 and "waiting for labels" in res.output, res.output  # nothing answered yet
    assert path.read_text() == saved and (demo_run / "queries" / "round-1.open.csv").is_file()
    assert import_answers(demo_run, path).new == 5


def test_import_names_a_folder_a_header_without_rows_and_a_blank_first_line(demo_run, tmp_path):
    with pytest.raises(Exception, match="is a folder; give the answers file in it"):
        import_answers(demo_run, tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("sample_id,label\n")
    rep = import_answers(demo_run, empty)
    assert rep.notes == [(0, "the file holds a header and no rows: nothing to import")] and not rep.errors
    q = _open(demo_run)
    semi = tmp_path / "semi.csv"
    semi.write_text(f"\nsample_id;label\n{q[0].sample_id};4\n")
    res = runner.invoke(app, ["import-labels", str(demo_run), str(semi)])
    assert "1 new" in res.output and "empty row before the header" in res.output, res.output
    assert "19 queries are still open; `adakit resume" in res.output  # resume would only wait
    # a semicolon file whose header holds a comma inside a column name (it was read as a comma file)
    semi.write_text(f"sample_id;label;note, optional\n{q[1].sample_id};5;looks like a 5, I think\n")
    rep = import_answers(demo_run, semi)
    assert not rep.errors and rep.new == 1


def test_answers_import_without_the_run_data_on_this_machine(demo_run, tmp_path, monkeypatch):
    """The ledger holds the class list and the queried ids: answers import where the data is missing."""
    q = _open(demo_run)
    f = tmp_path / "a.csv"
    f.write_text(f"sample_id,label\n{q[0].sample_id},3\n{q[1].sample_id},drop\nnope,1\n")
    import adakit.labeling.run
    from adakit.errors import DataError

    def missing(*a, **k):
        raise DataError("data folder not found")

    monkeypatch.setattr(adakit.labeling.run, "load_domains", missing)
    rep = import_answers(demo_run, f)
    assert rep.new == 2 and [m for _, m in rep.errors] == ["unknown id 'nope': not one of the run's queried samples"]
    assert _labels(demo_run)[0] == {q[0].sample_id: 3, q[1].sample_id: -1}


def test_images_browsers_cannot_show_are_served_and_exported_as_png(tmp_path):
    """TIFF / PPM / PGM pool images (accepted for training) had no image on the page and broke the Label Studio
    export ("the queries mix image files and rows without an image")."""
    import io

    import numpy as np
    from PIL import Image

    from adakit.data.images import read_image
    from adakit.labeling.run import LabelingRun
    from labeling.conftest import make_run, office_values

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for dom, ext in (("amazon", ".png"), ("webcam", ".tif")):
        for c, v in (("dark", 40), ("light", 210)):
            (root / dom / c).mkdir(parents=True)
            for i in range(4):
                a = np.clip(v + rng.integers(-20, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(root / dom / c / f"{i}{'.ppm' if i == 3 else ext}")
    run = make_run(office_values(root), tmp_path / "run")
    lr = LabelingRun(run)
    items = lr.items()
    assert items and all(i.has_image for i in items)
    data, ctype = lr.image_data(items[0].sample_id)
    assert ctype == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(read_image(items[0].image)))
    out = tmp_path / "tasks.json"
    n, _ = export_labelstudio(run, out)
    tasks = json.loads(out.read_text())
    assert n == len(items) and all(t["data"]["image"].endswith(".png") for t in tasks)
    assert all(Path(t["data"]["image"]).is_file() for t in tasks)


def test_answers_given_as_python_objects_import_like_a_file(demo_run, tmp_path):
    """import_answers took only a file: a pipeline with its own tool had to write a CSV first."""
    import numpy as np

    q = _open(demo_run)
    with Ledger(demo_run / "ledger.sqlite") as led:
        classes = led.classes()
    report = import_answers(demo_run, {q[0].sample_id: classes[3], q[1].sample_id: 4, q[2].sample_id: None,
                                       q[3].sample_id: "drop", "nope/1": 1})
    assert (report.new, report.unanswered, report.committed) == (3, 1, True)
    assert [m for _, m in report.errors] == ["unknown id 'nope/1': not a sample of the target pool"]
    labels, _, problems = _labels(demo_run)
    assert labels[q[0].sample_id] == 3 and labels[q[1].sample_id] == 4 and problems == []
    pairs = import_answers(demo_run, [(q[4].sample_id, np.int64(5)), (q[5].sample_id, 6.0)])
    assert (pairs.new, pairs.ok) == (2, True)
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"sample_id": [q[6].sample_id, q[7].sample_id], "label": [7, float("nan")]})
    table = import_answers(demo_run, df)
    assert (table.new, table.unanswered, table.ok) == (1, 1, True)
    nullable = pd.DataFrame({"sample_id": [q[8].sample_id, q[9].sample_id], "label": pd.array([8, None],
                                                                                            dtype="Int64")})
    r = import_answers(demo_run, nullable)  # a nullable integer column with a missing answer (it crashed)
    assert (r.new, r.unanswered, r.ok) == (1, 1, True)
    by_index = pd.DataFrame({"label": [1]}, index=pd.Index([q[10].sample_id], name="sample_id"))
    assert import_answers(demo_run, by_index).new == 1
    assert import_answers(demo_run, pd.Series({q[11].sample_id: 2})).new == 1
    with pytest.raises(DataError, match="the table has no 'label' column"):
        import_answers(demo_run, pd.DataFrame({"sample_id": [q[12].sample_id], "class": ["x"]}))
    with pytest.raises(DataError, match="item 1 is .* not a .sample_id, label. pair"):
        import_answers(demo_run, [(q[8].sample_id,)])
    with pytest.raises(DataError, match="expected a file path, a mapping"):
        import_answers(demo_run, 42)


def _image_run_waiting(root: Path, classes: list[str], budget: int, name) -> tuple[list[str], dict]:
    """Source and target image folders of ``classes`` (4 tiny images each, named ``name(i)``) under ``root``, and a
    run in ``root/r`` waiting for the labels of its ``budget`` queries: (their ids, the config)."""
    import numpy as np
    from PIL import Image

    from adakit.errors import WaitingForLabels
    from adakit.loop import ActiveLoop

    rng = np.random.default_rng(0)
    for dom in ("src", "tgt"):
        for k, c in enumerate(classes):
            (root / dom / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray((rng.random((16, 16, 3)) * 60 + 60 * k).astype(np.uint8)).save(root / dom / c / name(i))
    cfg = {"data": {"format": "image_folder", "root": str(root), "source": "src", "target": "tgt",
                    "image_size": 16, "resize": 16},
           "model": {"backbone": "lenet", "bottleneck_dim": 8}, "budget": {"total": budget, "rounds": 1},
           "train": {"warmup_iters": 2, "round_iters": 1, "batch_size": 4, "threads": 1}, "oracle": {"kind": "file"}}
    with pytest.raises(WaitingForLabels) as waiting, ActiveLoop(build_config(cfg), root / "r",
                                                                show_progress=False) as loop:
        loop.run()
    return waiting.value.open, cfg


def test_names_and_ids_in_another_unicode_form_or_with_spaces_are_found(tmp_path):
    """A class folder copied from macOS spells "café" in NFD, a person types it in NFC (they look identical in
    the error); a class folder "mug " is typed "mug" (cells are read stripped). Both resolve; ids too, also an id
    that begins with a space (a class folder " lead"), which the stripped cells of the run's own CSV lost."""
    import unicodedata

    from adakit.oracle import class_lookup, resolve_label

    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    assert nfd != nfc
    classes = ["cat", nfd, "mug ", " lead"]
    assert [resolve_label(t, classes) for t in (nfc, nfd, "mug", " mug ", "mug ", "cat")] == [1, 1, 2, 2, 2, 0]
    assert resolve_label("dog", classes) is None and class_lookup(["a", "a "])["a"] == 0  # exact names win
    ids, _ = _image_run_waiting(tmp_path, classes, 16, lambda i: f"{nfd}-{i}.png")
    assert any(sid.startswith(" lead/") for sid in ids)
    rows = "".join(f"{unicodedata.normalize('NFC', sid)},{nfc if nfd in sid.split('/')[0] else 'mug'}\n"
                   for sid in ids)
    (tmp_path / "a.csv").write_text("sample_id,label\n" + rows, encoding="utf-8")
    report = import_answers(tmp_path / "r", tmp_path / "a.csv")
    assert not report.errors and report.new == len(ids) == 16


def test_exports_never_replace_the_ledger_and_paths_with_brackets_print_as_they_are(demo_run, tmp_path):
    """`ledger export RUN RUN/ledger.sqlite --force` replaced the ledger with a CSV (every label gone), and
    export-labelstudio did the same with JSON. Paths with brackets were read as Rich markup: "runs/a2w [test]"
    printed as "runs/a2w ", and "x[/red]" crashed the command."""
    import shutil

    ledger = demo_run / "ledger.sqlite"
    before = ledger.read_bytes()[:16]
    for args in (["ledger", "export", str(demo_run), str(ledger), "--force"],
                 ["export-labelstudio", str(demo_run), str(ledger), "--force", "--all"],
                 ["ledger", "export", str(demo_run), str(demo_run / "ledger.sqlite-wal"), "--force"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "is a run's ledger" in res.output and "never replaced" in res.output, res.output
    assert ledger.read_bytes()[:16] == before == b"SQLite format 3\x00"
    link = tmp_path / "labels.csv"
    link.symlink_to(ledger)
    res = runner.invoke(app, ["ledger", "export", str(demo_run), str(link), "--force"])
    assert res.exit_code == 2 and "is a run's ledger" in res.output
    for name in ("a2w [test]", "x[/red]"):
        run = tmp_path / name
        shutil.copytree(demo_run, run)
        res = runner.invoke(app, ["ledger", "check", str(run)])
        assert res.exit_code == 0 and f"{run}: ledger ok" in res.output, res.output
        res = runner.invoke(app, ["ledger", "export", str(run), str(tmp_path / f"out {name}.csv".replace("/", "_"))])
        assert res.exit_code == 0 and f"out {name}.csv".replace("/", "_") in res.output, res.output


def test_ids_and_classes_that_start_a_formula_are_exported_as_text_and_import_back(tmp_path):
    """CSV injection: a class folder "=SUM(1)" (or "-neg", "@at") would run as a formula when an annotator opens
    the round's CSV in a spreadsheet. Such cells are written with a leading apostrophe; the run's own file, a
    copy saved by a spreadsheet (apostrophes gone) and a ledger export all import back to the right samples."""
    import csv
    import shutil

    import numpy as np

    from adakit.oracle import export_round
    from adakit.run_model import write_predictions

    classes = ["-neg", "=SUM(1)", "@at"]  # sorted, as the image folder lists them
    ids, cfg = _image_run_waiting(tmp_path, classes, 6, lambda i: f"{i}.png")
    shutil.copytree(tmp_path / "r", tmp_path / "r2")
    round_csv = tmp_path / "r" / "queries" / "round-1.csv"
    rows = list(csv.DictReader(round_csv.open(newline="")))
    assert [r["sample_id"] for r in rows] == ["'" + sid for sid in ids]  # every id starts with a class folder
    assert all(r["suggested"] in ("'" + c for c in classes) for r in rows)
    assert all(not r[k].startswith(("=", "-", "+", "@")) for r in rows for k in ("sample_id", "location", "suggested"))
    # the file still counts as the run's own (same ids): exporting the round again keeps it, no .open.csv
    d = load_domains(build_config(cfg).data, seed=0)
    with Ledger(tmp_path / "r" / "ledger.sqlite") as led:
        queries = [q for q in led.queries() if q.sample_id in ids]
    assert export_round(d.pool, classes, queries, round_csv.with_suffix("")) == round_csv
    assert not (tmp_path / "r" / "queries" / "round-1.open.csv").exists()
    # answers typed into the run's file (apostrophes kept) ...
    for r in rows:
        r["label"] = r["sample_id"][1:].split("/")[0]  # the true class, its name as written in the folder
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rep = import_answers(tmp_path / "r", filled)
    truth = {sid: classes.index(sid.split("/")[0]) for sid in ids}
    assert not rep.errors and _labels(tmp_path / "r")[0] == truth
    # ... and a copy saved by a spreadsheet, which writes the cells' text without the apostrophe
    (tmp_path / "saved.csv").write_text("sample_id,label\n" + "".join(f"{sid},{sid.split('/')[0]}\n" for sid in ids))
    rep = import_answers(tmp_path / "r2", tmp_path / "saved.csv")
    assert not rep.errors and _labels(tmp_path / "r2")[0] == truth
    # the ledger export marks its text cells too, and imports back into a fresh copy exactly
    out = tmp_path / "labels.csv"
    assert runner.invoke(app, ["ledger", "export", str(tmp_path / "r"), str(out)]).exit_code == 0
    exported = list(csv.DictReader(out.open(newline="")))
    assert {r["sample_id"] for r in exported} == {"'" + sid for sid in ids}
    assert {r["class"] for r in exported} <= {"'" + c for c in classes}
    shutil.rmtree(tmp_path / "r2")
    shutil.copytree(tmp_path / "r", tmp_path / "r3")
    with Ledger(tmp_path / "r3" / "ledger.sqlite") as led:
        led.conn.execute("DELETE FROM labels")
    assert import_answers(tmp_path / "r3", out).new == len(ids) and _labels(tmp_path / "r3")[0] == truth
    # predictions: ids, predicted class and the p_<class> header
    write_predictions(tmp_path / "pred.csv", ["=id"], np.array([[0.2, 0.5, 0.3]]), classes)
    pred = list(csv.reader((tmp_path / "pred.csv").open(newline="")))
    assert pred[0][3:] == ["p_-neg", "p_=SUM(1)", "p_@at"] and pred[1][:2] == ["'=id", "'=SUM(1)"]


def test_a_semicolon_file_with_carriage_return_line_ends_and_decimal_commas_imports(demo_run, tmp_path):
    """Excel's "CSV (Macintosh)" ends lines with a bare carriage return; in a locale with a decimal comma it
    separates with semicolons: the separator is found from the header line, not from the whole file."""
    q = _open(demo_run)
    f = tmp_path / "mac.csv"
    f.write_bytes(f"sample_id;location;score;suggested;label\r{q[0].sample_id};x;0,99;5;3\r"
                  f"{q[1].sample_id};x;0,98;5;4\r".encode())
    rep = import_answers(demo_run, f)
    assert rep.ok and rep.new == 2, rep.errors
    assert _labels(demo_run)[0] == {q[0].sample_id: 3, q[1].sample_id: 4}


@pytest.mark.parametrize("header", ["sample_id,location,score,suggested,label,Label",
                                    "sample_id,location,score,suggested,label,answer"])
def test_a_header_with_two_label_columns_is_refused_naming_them(demo_run, tmp_path, header):
    """Answers typed into a second label column (one added beside the export's empty 'label') were skipped as
    unanswered, the import exiting 0: which column holds the answers is not knowable, so nothing is imported."""
    q = _open(demo_run)
    f = tmp_path / "two.csv"
    f.write_text(f"{header}\n{q[0].sample_id},x,0.9,5,,3\n{q[1].sample_id},x,0.9,5,,4\n", encoding="utf-8")
    rep = import_answers(demo_run, f)
    assert rep.unreadable and not rep.committed and rep.errors[0][0] == 1, rep
    second = header.rsplit(",", 1)[1]
    assert f"'label' (column 5) and {second!r} (column 6)" in rep.errors[0][1]
    assert "keep one" in rep.errors[0][1] and "nothing was imported" in rep.errors[0][1]
    res = runner.invoke(app, ["import-labels", str(demo_run), str(f)])
    assert res.exit_code == 1 and "two label columns" in res.output, res.output
    assert _labels(demo_run)[0] == {}


def test_a_sample_answered_twice_with_one_label_rejected_records_neither(demo_run, tmp_path):
    """Two rows for one sample, one with a label outside the class list (a typo): the other row's answer was
    recorded, although the typo may have meant another class; like other conflicting rows, neither is recorded
    now, each reported on its line."""
    q = _open(demo_run)
    a, b, c = (x.sample_id for x in q[:3])
    f = tmp_path / "answers.csv"
    f.write_text("sample_id,label\n"
                 f"{a},3\n"       # 2 valid, but line 3 answers a too
                 f"{a},seven\n"   # 3 not a class
                 f"{b},sevn\n"    # 4 not a class
                 f"{b},4\n"       # 5 valid, but line 4 answers b too
                 f"{c},5\n",      # 6 ok
                 encoding="utf-8")
    rep = import_answers(demo_run, f)
    lines = dict(rep.errors)
    assert sorted(lines) == [2, 3, 4, 5], rep.errors
    assert "'seven' is not in the class list" in lines[3] and "'sevn' is not in the class list" in lines[4]
    assert "line 3 answers it too" in lines[2] and "line 4 answers it too" in lines[5]
    assert rep.new == 1 and _labels(demo_run)[0] == {c: 5}


def test_a_ledger_given_as_the_answers_file_is_named_as_such(demo_run):
    """`adakit import-labels RUN RUN/ledger.sqlite` was told the file is UTF-16 and to save it as UTF-8."""
    res = runner.invoke(app, ["import-labels", str(demo_run), str(demo_run / "ledger.sqlite")])
    assert res.exit_code == 1 and "UTF-16" not in res.output, res.output
    assert "an SQLite database" in res.output and "not an answers file" in res.output
    assert _labels(demo_run)[0] == {}


def test_with_classes_named_by_numbers_a_number_that_names_no_class_is_not_read_as_an_index(tmp_path):
    """Label codes as class names ("2", "3", "1"): "1" is the name of class 2, and "0", which names no class,
    was read as index 0 (class "2"): one file mixed names and indices, silently. As in image lists, a number is
    read as a name only there; one that names no class is an error saying so."""
    import numpy as np

    from adakit.errors import WaitingForLabels
    from adakit.loop import ActiveLoop

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(60, 5)).astype(np.float32)
    cfg = {"budget": {"total": 6, "rounds": 2}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
           "train": {"warmup_iters": 3, "round_iters": 3, "threads": 1, "batch_size": 8}}
    run = tmp_path / "run"
    with pytest.raises(WaitingForLabels):
        ActiveLoop(cfg, run, source=(xs, rng.integers(0, 3, 60)), target=(xs + 0.1, None), classes=["2", "3", "1"],
                   oracle="file", show_progress=False).run()
    ids = [q.sample_id for q in _open(run)]
    answers = tmp_path / "answers.csv"
    answers.write_text(f"sample_id,label\n{ids[0]},0\n{ids[1]},1\n")
    rep = import_answers(run, answers)
    assert [line for line, _ in rep.errors] == [2], rep.errors
    assert "label '0' is not a class name" in rep.errors[0][1] and "named by numbers (2, 3, 1)" in rep.errors[0][1]
    assert _labels(run)[0] == {ids[1]: 2}  # "1" is the name of class index 2
    assert import_answers(run, {ids[0]: 0}).new == 1  # from Python, an int is the class index
    assert _labels(run)[0] == {ids[0]: 0, ids[1]: 2}


@pytest.mark.parametrize("hint", ["sep=;", '"sep=;"', "sep=;;;;", "sep=\t"])
def test_excels_separator_line_before_the_header_is_read(demo_run, tmp_path, hint):
    """Excel writes (and reads) a first line "sep=;" naming the separator: it was taken for the header ("found:
    sep=, ") and the file refused."""
    q = _open(demo_run)
    d = hint[4] if hint[0] != '"' else hint[5]
    f = tmp_path / "hint.csv"
    f.write_text(f"{hint}\nsample_id{d}location{d}score{d}suggested{d}label\n"
                 f"{q[0].sample_id}{d}x{d}0,99{d}5{d}3\n", encoding="utf-8")
    rep = import_answers(demo_run, f)
    assert rep.ok and rep.new == 1 and not rep.errors, rep.errors
    assert _labels(demo_run)[0] == {q[0].sample_id: 3}


def test_a_two_cell_row_under_the_exports_header_is_named(demo_run, tmp_path):
    """A hand-written row "id,3" under the export's five-column header puts 3 under 'location': it was only counted
    among the rows without a label. It still is (a row Excel shortened is unanswered), with a note naming it."""
    q = _open(demo_run)
    f = tmp_path / "short.csv"
    f.write_text(f"sample_id,location,score,suggested,label\n{q[0].sample_id},3\n{q[1].sample_id},x,0.9,5\n",
                 encoding="utf-8")
    rep = import_answers(demo_run, f)
    assert rep.ok and rep.new == 0 and rep.unanswered == 2
    assert rep.notes == [(2, "'3' is under 'location', not under 'label' (column 5): this row has no label and was "
                             "skipped; put the answer in the label column")]


def test_ledger_export_onto_a_folder_says_to_give_a_file_name(demo_run, tmp_path):
    """OUT_FILE naming an existing folder was called a file that exists ('add --force'), and with --force the
    error said to free some space or choose a writable folder; it now says OUT_FILE is a folder."""
    (tmp_path / "exports").mkdir()
    for extra in ([], ["--force"]):
        res = runner.invoke(app, ["ledger", "export", str(demo_run), str(tmp_path / "exports"), *extra])
        assert res.exit_code == 2 and "is a folder; give a file name" in res.output, res.output
        assert "free some space" not in res.output and "--force" not in res.output
    assert list((tmp_path / "exports").iterdir()) == []


def test_waiting_message_names_the_file_that_lists_the_open_queries(tmp_path):
    """A run waiting for people names the file to fill (and the page); when people's answers are saved in
    round-K.csv, the open queries go to round-K.open.csv, and the message names that file instead."""
    from adakit.errors import WaitingForLabels
    from adakit.loop import ActiveLoop

    from .conftest import DEMO

    run = tmp_path / "run"
    with pytest.raises(WaitingForLabels) as waiting, ActiveLoop(build_config(DEMO), run, show_progress=False) as loop:
        loop.run()
    first = run / "queries" / "round-1.csv"
    assert f"wait for labels in {first};" in str(waiting.value)
    assert f"`adakit label {run}`" in str(waiting.value)
    assert f"`adakit import-labels {run} {first}`; then `adakit resume {run}`" in str(waiting.value)
    ids = [q.sample_id for q in _open(run)]
    first.write_text(f"sep=;\nsample_id;label\n{ids[0]};3\n")  # a spreadsheet saved an answer into the export
    assert import_answers(run, first).new == 1
    with pytest.raises(WaitingForLabels) as waiting, ActiveLoop.resume(run, show_progress=False) as loop:
        loop.run()
    side = run / "queries" / "round-1.open.csv"
    assert side.is_file() and f"wait for labels in {side};" in str(waiting.value)
    assert f"`adakit import-labels {run} {side}`" in str(waiting.value)
