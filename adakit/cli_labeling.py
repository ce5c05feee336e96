"""CLI commands for real annotation: query, import-labels, label, export-labelstudio, ledger check."""

from __future__ import annotations

from pathlib import Path

import typer

from adakit.cli import Typer, _fail, app, err, flag, out, tagged
from adakit.errors import AdakitError
from adakit.rundir import sh

ledger_app = Typer(no_args_is_help=True, help="Inspect a run's label ledger.")
app.add_typer(ledger_app, name="ledger")


@app.command()
def query(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder with a trained model"),
          budget: int = typer.Option(..., "--budget", "-b", help="how many samples to query")) -> None:
    """One selection round on a run's last checkpoint: writes queries/round-K.csv (+ .json) for people."""
    from adakit.loop import ActiveLoop

    try:
        with ActiveLoop.resume(run_dir, show_progress=False) as loop:
            r = loop.select_round(budget)
            n = len(loop.ledger.queries(r))
    except AdakitError as e:
        _fail(e)
    csv_path = Path(run_dir) / "queries" / f"round-{r}.csv"
    out.print(f"round {r}: {n} queries in {csv_path} (and .json). Answer them with `adakit label {sh(run_dir)}` "
              f"or fill the label column and `adakit import-labels {sh(run_dir)} {sh(csv_path)}`; then `adakit resume "
              f"{sh(run_dir)}`.",
              highlight=False, soft_wrap=True)


#: how many errors / notes of an import are printed (then counts per kind)
SHOWN = 10


def _kinds(counts) -> str:
    return "in all: " + ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


@app.command("import-labels")
def import_labels(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder"),
                  file: Path = typer.Argument(..., metavar="FILE",
                                              help="answers: CSV (sample_id,label) or Label Studio JSON export"),
                  annotator: str = typer.Option(None, "--annotator", help="who answered (default: file:<name>)"),
                  correct: bool = flag("record answers that differ from the ledger as corrections", "--correct"),
                  dry_run: bool = flag("validate only, write nothing", "--dry-run"),
                  skip_unqueried: bool = flag("skip, rather than reject, rows for samples this run has not queried "
                                              "(an earlier run's labels, imported at every round)",
                                              "--skip-unqueried")) -> None:
    """Validate answers (errors with line numbers) and commit the valid ones in one transaction.

    Importing the same file again changes nothing. Exit code 1 when some rows were rejected.
    """
    from adakit.labeling.answers import import_answers

    try:
        rep = import_answers(run_dir, file, annotator=annotator, correct=correct, dry_run=dry_run,
                             skip_unqueried=skip_unqueried)
    except AdakitError as e:
        _fail(e)
    errors, notes = rep.messages(limit=SHOWN)
    for m in notes:
        tagged(out, "note:", "dim", m)
    if len(rep.notes) > len(notes):
        tagged(out, "note:", "dim", f"... {len(rep.notes) - len(notes)} more notes ({_kinds(rep.note_kinds)})")
    for m in errors:
        tagged(err, "error:", "red", m)
    if len(rep.errors) > len(errors):
        tagged(err, "error:", "red", f"... {len(rep.errors) - len(errors)} more errors ({_kinds(rep.error_kinds)})")
    prefix = "dry run, nothing written: " if dry_run else ""
    out.print(prefix + rep.summary(), highlight=False, soft_wrap=True)
    if rep.new + rep.corrected and not dry_run:
        from adakit.ledger import Ledger
        from adakit.rundir import resume_hint, stored_experiment

        then = resume_hint(run_dir, stored_experiment(run_dir).data.format == "objects")
        with Ledger.read_only(Path(run_dir) / "ledger.sqlite") as led:
            still_open = len(led.queries()) - len(led.current_labels())
            trained = {status for (status,) in led.conn.execute("SELECT status FROM rounds")} == {"evaluated"}
        if not still_open and trained and (Path(run_dir) / "summary.json").is_file():  # nothing left to train
            out.print("the run has finished: none of its models is trained on these answers (resuming it trains "
                      "nothing); they are kept in the ledger, and its reports name them", highlight=False,
                      soft_wrap=True)
        else:
            out.print(f"next: {then} trains on them" if not still_open else
                      f"{still_open} queries are still open; {then} continues once they are answered (or dropped)",
                      highlight=False, soft_wrap=True)
    if errors:
        raise typer.Exit(code=1)


@app.command()
def label(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder with open queries"),
          port: int = typer.Option(8765, "--port", help="TCP port (0 = any free port)"),
          host: str = typer.Option("127.0.0.1", "--host", help="address to bind; loopback unless you need otherwise"),
          annotator: str = typer.Option("web", "--annotator", help="name recorded with each answer"),
          new_token: bool = flag("replace the run's token (old URLs stop working)", "--new-token"),
          verbose: bool = flag("log every request", "--verbose")) -> None:
    """Serve a local page to answer the open queries one by one (each answer committed on the spot)."""
    import sys

    from adakit.labeling.run import LabelingRun
    from adakit.labeling.server import make_server

    out.print(f"loading {run_dir} and the model's suggestions...", highlight=False, soft_wrap=True)
    try:
        run = LabelingRun(run_dir)  # (an ExposedServerWarning is printed as every command-line warning is)
        server = make_server(run, host=host, port=port, annotator=annotator, new_token=new_token, verbose=verbose)
    except AdakitError as e:
        _fail(e)
    except OSError as e:
        _fail(RuntimeError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port"))
    done, total = run.progress()
    out.print(f"labelling {total - done} open of {total} queries in {run_dir}", highlight=False, soft_wrap=True)
    out.print(f"open {server.url}   (Ctrl-C stops; every answer is already saved)", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        run.close()


@app.command("export-labelstudio")
def export_labelstudio_cmd(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder"),
                           out_file: Path = typer.Argument(..., metavar="OUT_FILE", help="tasks JSON to write"),
                           all_queries: bool = flag("every query, not only open ones", "--all"),
                           root: Path = typer.Option(None, "--root", help="write image paths relative to this folder"),
                           url_prefix: str = typer.Option(None, "--url-prefix",
                                                          help="prefix of image references, e.g. "
                                                               "'/data/local-files/?d=' with --root = Label Studio's "
                                                               "LOCAL_FILES_DOCUMENT_ROOT"),
                           force: bool = flag("replace OUT_FILE if it exists", "--force")) -> None:
    """Label Studio tasks (data.image, meta.sample_id, model prediction) + labelling config for the queries."""
    from adakit.labeling.labelstudio import export_labelstudio

    try:
        n, cfg = export_labelstudio(run_dir, out_file, open_only=not all_queries, root=root, url_prefix=url_prefix,
                                    overwrite=force)
    except AdakitError as e:
        _fail(e)
    out.print(f"{n} tasks in {out_file}; labelling config in {cfg}. Import the answers back with "
              f"`adakit import-labels {sh(run_dir)} EXPORT.json` (Label Studio's JSON or JSON-MIN export).",
              highlight=False, soft_wrap=True)


@ledger_app.command("export")
def ledger_export(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder"),
                  out_file: Path = typer.Argument(..., metavar="OUT_FILE",
                                                  help="CSV file to write (must not exist yet, unless --force)"),
                  history: bool = flag("every label row, corrections included (default: each sample's current "
                                       "label)", "--history"),
                  force: bool = flag("replace OUT_FILE if it exists", "--force")) -> None:
    """Write the run's labels to a CSV: sample_id, round, pool_index, label, class, annotator, created (and
    corrects with --history). Reads the ledger only (no data, no model); safe while the run trains."""
    import csv

    from adakit.csvcells import safe_cell
    from adakit.errors import ConfigError, DataError
    from adakit.ledger import DROPPED, Ledger
    from adakit.rundir import check_not_ledger, replaced_atomically

    try:
        path = Path(run_dir) / "ledger.sqlite"
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not a run folder (no ledger.sqlite)")
        check_not_ledger(out_file, "OUT_FILE")
        if out_file.is_dir():  # (--force does not replace a folder)
            raise ConfigError(f"OUT_FILE {out_file} is a folder; give a file name, e.g. {out_file / 'labels.csv'}")
        if out_file.exists() and not force:
            raise ConfigError(f"{out_file} exists; choose another file or add --force to replace it")
        with Ledger.read_only(path) as led:
            rows = led.label_table(history=history)
    except AdakitError as e:
        _fail(e)
    keys = ["sample_id", "round", "pool_index", "label", "class", "annotator", "created"] + \
        (["corrects"] if history else [])
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(out_file) as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows({k: safe_cell(v) for k, v in r.items()} for r in rows)
    except OSError as e:
        _fail(DataError(f"cannot create the folder of {out_file} ({e.strerror or e})"))
    except AdakitError as e:
        _fail(e)
    dropped = sum(r["label"] == DROPPED for r in rows)
    what = "label rows" if history else "answered queries"
    out.print(f"{len(rows)} {what} ({dropped} dropped) written to {out_file}", highlight=False, soft_wrap=True)


@ledger_app.command("check")
def ledger_check(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder")) -> None:
    """Verify the ledger: an adakit ledger SQLite can read, integrity, every label refers to a queried id and
    lies in the class list, no id labelled twice without a correction record, every correction replaces a label
    row that exists, the stored config validates.
    Exit code 1 when problems are found."""
    from adakit.ledger import check_run

    try:
        res = check_run(run_dir)
    except AdakitError as e:
        _fail(e)
    for n in res.notes:
        tagged(out, "note:", "dim", n)
    if res.problems:
        for p in res.problems:
            tagged(err, "problem:", "red", p)
        err.print(f"{run_dir}: {len(res.problems)} problem(s)", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    dropped = f", {res.dropped} dropped (nobody could label them)" if res.dropped else ""
    out.print(f"{run_dir}: ledger ok ({res.queries} queries, {res.labelled} labelled{dropped}, {res.corrections} "
              "corrections)", highlight=False, soft_wrap=True)
