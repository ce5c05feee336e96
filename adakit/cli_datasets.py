"""CLI: ``adakit data list`` and ``adakit data prepare`` (registered on adakit.cli.app as ``data``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from adakit.cli import Typer, _fail, app, err, flag, out, tagged
from adakit.errors import AdakitError

data_app = Typer(no_args_is_help=True, help="Known datasets: list them, or download / prepare one into "
                                                  "the layout adakit's configs read.")
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list() -> None:
    """Print the known datasets: domains with their published sizes, classes, licence and source."""
    from adakit.datasets import CATALOG

    table = Table(show_lines=True)
    for col in ("name", "dataset", "domains (images)", "classes", "licence", "source", "download"):
        table.add_column(col, overflow="fold")
    for ds in CATALOG.values():
        doms = ", ".join(f"{d.name} {d.count:,}{'' if d.certain else '?'}" for d in ds.domains)
        table.add_row(ds.name, ds.title, doms, str(ds.num_classes), ds.licence, ds.homepage,
                      "manual" if ds.manual else "direct")
    out.print(table)
    for ds in CATALOG.values():
        if ds.manual:
            out.print(f"{ds.name}: {ds.manual}, then --from it.", highlight=False)
    out.print("'?' = published count we could not confirm (a mismatch only warns). Prepare one with "
              "`adakit data prepare NAME --out DIR [--from ARCHIVE_OR_FOLDER]`.", highlight=False)


@data_app.command("prepare")
def data_prepare(
    name: str = typer.Argument(..., metavar="NAME",
                               help="dataset name from `adakit data list` (office31, officehome, visda, ...)"),
    out_dir: Path = typer.Option(None, "--out", help="folder to write (default $ADAKIT_DATA/<dataset>, "
                                                      "$ADAKIT_DATA/digits for mnist/usps/mnistm)"),
    sources: list[Path] = typer.Option(None, "--from", metavar="PATH", help="archive (zip/tar/tar.gz) or folder "
                                       "you already have; repeatable. Without it: download"),
    domains: list[str] = typer.Option(None, "--domain", metavar="DOMAIN",
                                      help="prepare only this domain (repeatable)"),
    force: bool = flag("replace existing prepared domains", "--force"),
    no_verify: bool = flag("skip decoding every image", "--no-verify"),
    no_checksum: bool = flag("don't check --from files against the published checksums", "--no-checksum"),
    quiet: bool = flag("no progress bar", "--quiet"),
) -> None:
    """Write a dataset in adakit's layout and check its per-domain image counts against the published ones."""
    from adakit.datasets import prepare

    try:
        res = prepare(name, out_dir, sources or None, domains=domains or None, force=force,
                      verify_images=not no_verify, check_checksums=not no_checksum, progress=not quiet)
    except AdakitError as e:
        _fail(e)
    for note in res.notes:
        out.print(note, highlight=False, soft_wrap=True)
    for w in res.warnings:
        tagged(err, "warning:", "yellow", w)
    counts = ", ".join(f"{k} {v:,}" for k, v in res.counts.items())
    out.print(f"prepared {res.name} in {res.out}: {counts}", highlight=False, soft_wrap=True)
