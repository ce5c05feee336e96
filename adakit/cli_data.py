"""CLI commands about data: ``adakit features`` (registered on adakit.cli.app)."""

from __future__ import annotations

from pathlib import Path

import typer

from adakit.cli import _fail, app, out
from adakit.errors import AdakitError


@app.command()
def features(
    images: Path = typer.Argument(..., help="image folder (<class>/<image>) or, with --list, a 'path label' file"),
    out_file: Path = typer.Option(..., "--out", help="the .npz to write (feat, y, classes, ids)"),
    model: Path = typer.Option(None, "--model",
                               help="ONNX model (default $ADAKIT_DATA/models/mobilenetv2-12-int8_with_feat.onnx)"),
    output: str = typer.Option("feat", "--output", help="name of the model output to keep"),
    image_list: bool = typer.Option(False, "--list", help="IMAGES is an image-list file, not a folder"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    image_size: int = typer.Option(None, "--image-size", min=8, help="crop side (default: the model's input)"),
    resize: int = typer.Option(None, "--resize", min=8, help="shorter side before the crop (default 256 for 224)"),
    threads: int = typer.Option(None, "--threads", min=1, help="onnxruntime threads (default: all cores)"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip opening every image header first"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Run a frozen ONNX backbone over an image domain once and write its features as an .npz.

    The result is read by `data.format: npz` (e.g. `pattern: /path/{domain}.npz`). Needs the onnx extra
    (pip install onnxruntime).
    """
    from adakit.features import cache_features

    try:
        path, shape = cache_features(images, out_file, model=model, output=output,
                                     fmt="image_list" if image_list else "image_folder", batch_size=batch_size,
                                     image_size=image_size, resize=resize, threads=threads,
                                     verify=not no_verify, show_progress=not quiet)
    except AdakitError as e:
        _fail(e)
    out.print(f"wrote {path}: {shape[0]} images, {shape[1]}-d features", highlight=False, markup=False, soft_wrap=True)
