"""CLI commands about data: ``adakit features`` (registered on adakit.cli.app)."""

from __future__ import annotations

from pathlib import Path

import typer

from adakit.cli import _fail, app, flag, out
from adakit.errors import AdakitError


@app.command()
def features(
    images: Path = typer.Argument(..., metavar="IMAGES",
                                  help="image folder (<class>/<image>, or unlabelled photos without class "
                                            "folders) or, with --list, a 'path label' file"),
    out_file: Path = typer.Option(..., "--out", help="the .npz to write (feat, y, classes, ids)"),
    backbone: str = typer.Option(None, "--backbone", show_default=False,
                                 help="torchvision or timm backbone: resnet18, resnet34, resnet50, resnet101, "
                                      "mobilenet_v2, vit_b_16 or timm/<name> (default: mobilenet_v2 with ImageNet "
                                      "weights, 1280-d)"),
    weights: str = typer.Option("imagenet", "--weights",
                                help="imagenet (downloaded once into the torch hub cache; offline, the error says "
                                     "which file to place where) or a local state-dict file"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N (torch backbones)"),
    model: Path = typer.Option(None, "--model", help="an ONNX model with a feature output instead of --backbone "
                                                     "(needs onnxruntime; see scripts/export_onnx_features.py)"),
    output: str = typer.Option("feat", "--output", help="ONNX: name of the model output to keep"),
    image_list: bool = flag("IMAGES is an image-list file, not a folder", "--list"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, metavar="N", help="images per forward pass"),
    image_size: int = typer.Option(None, "--image-size", min=8, metavar="PIXELS",
                                   help="crop side (default 224, or the ONNX model's input)"),
    resize: int = typer.Option(None, "--resize", min=8, metavar="PIXELS",
                               help="shorter side before the crop (default 256 for 224)"),
    threads: int = typer.Option(None, "--threads", min=1, metavar="N", help="CPU threads (default: all cores)"),
    no_verify: bool = flag("skip decoding every image first", "--no-verify"),
    quiet: bool = flag("no progress bar", "--quiet"),
    overwrite: bool = flag("replace --out if it exists", "--force"),
) -> None:
    """Run a frozen backbone over an image domain once and write its features as an .npz.

    The backbone is a torchvision or timm model (batched inference on CPU or GPU; default MobileNetV2 with
    ImageNet weights) or, with --model, an ONNX file. The result is read by `data.format: npz`
    (e.g. `pattern: /path/{domain}.npz`).
    """
    from adakit.features import cache_features

    try:
        path, shape = cache_features(images, out_file, model=model, output=output,
                                     fmt="image_list" if image_list else "image_folder", batch_size=batch_size,
                                     image_size=image_size, resize=resize, threads=threads,
                                     verify=not no_verify, show_progress=not quiet, backbone=backbone,
                                     weights=weights, device=device, overwrite=overwrite)
    except AdakitError as e:
        _fail(e)
    out.print(f"wrote {path}: {shape[0]} images, {shape[1]}-d features", highlight=False, soft_wrap=True)
