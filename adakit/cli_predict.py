"""``adakit predict RUN INPUT --out preds.csv``: a finished run's model on new images or feature rows."""

from __future__ import annotations

from pathlib import Path

import typer

from adakit.cli import _fail, app, flag, out
from adakit.errors import AdakitError


@app.command()
def predict(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder (its last checkpoint is used)"),
            input_path: Path = typer.Argument(..., metavar="INPUT",
                                              help="image, image folder, image list (.txt) or feature file "
                                                   "(.npz/.mat/.svmlight)"),
            out_file: Path = typer.Option(..., "--out", help="CSV to write: id, predicted, probability, p_<class>"),
            image_list: bool = flag("INPUT is an image list even without a .txt suffix", "--list"),
            device: str = typer.Option(None, "--device", help="cpu | cuda | cuda:N (default: the run's)"),
            batch_size: int = typer.Option(None, "--batch-size", min=1, metavar="N",
                                           help="samples per forward pass (default: the run's eval batch size)"),
            force: bool = flag("replace the --out file if it exists", "--force"),
            checkpoint: str = typer.Option(None, "--checkpoint", help="another saved model than the last: a round "
                                           "number, 'round R' or 'warm-up step K' (as adakit sweep names them)"),
            ) -> None:
    """Predict classes for new images or feature rows with a run's model (its last checkpoint)."""
    from adakit.run_model import load_run

    try:
        model = load_run(run_dir, device=device, batch_size=batch_size, checkpoint=checkpoint)
        n = model.predict_file(input_path, out_file, image_list=image_list, overwrite=force)
    except AdakitError as e:
        _fail(e)
    out.print(f"{n} predictions ({len(model.classes)} classes) written to {out_file}", highlight=False,
              soft_wrap=True)
