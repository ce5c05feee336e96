"""Feature cache: run a frozen backbone once over an image domain and keep the features on disk.

Backbones: a torchvision or timm model (``model.backbone`` names, e.g. ``mobilenet_v2``, ``resnet50``,
``timm/convnext_tiny``) with ImageNet weights (``imagenet``, downloaded once into the torch hub cache) or a
local state dict, run with batched ``torch.no_grad`` inference on CPU or GPU (default:
`DEFAULT_BACKBONE` with ImageNet weights, 1280-d); or an ONNX model with a feature output (onnxruntime, the
optional ``onnx`` extra; ``scripts/export_onnx_features.py`` adds such an output to a classifier).

The ``.npz`` written holds ``feat`` float32 (N, d), ``y`` int64 (N,), ``classes`` (C,), ``ids`` (N,)
(file paths relative to the domain root) and, when every path is ``root/id``, ``image_root`` (that
root, absolute), the format the ``npz`` loader reads. Images go through the
evaluation transform of `FileImageDomain` (resize shorter side, center crop, ImageNet mean/std), the
pre-processing of ``$ADAKIT_DATA/office31/features-mobilenetv2``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from adakit.data.domain import Domain
from adakit.devices import check_device
from adakit.errors import AdakitError, ConfigError, DataError
from adakit.progress import progress_bar

DEFAULT_BACKBONE = "mobilenet_v2"
DEFAULT_WEIGHTS = "imagenet"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise AdakitError("feature extraction needs onnxruntime, which is not installed; install it with: "
                          "pip install onnxruntime  (the adakit 'onnx' extra)") from None
    return onnxruntime


def file_record(path: Path, full_path: bool = False) -> str:
    """A model or weights file as the feature record names it: ``NAME (sha256 PREFIX)``, the same for any path to
    the same bytes (`adakit.data.features.same_extractor` compares the hash); ``full_path``: the path, not the
    name."""
    from adakit.datasets.download import file_hash

    return f"{path if full_path else path.name} (sha256 {file_hash(path)[:12]})"


#: the input types of an ONNX model adakit feeds (its float32 batches converted): ``tensor(...)`` → numpy type
ONNX_FLOAT_INPUTS = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxFeatureExtractor:
    """A frozen ONNX model; ``__call__`` maps a float batch (N, 3, H, W) to one named output (N, d).

    The model's input is read once, at load: a float16 or float64 input gets the batches converted to its type; an
    input of another type (uint8 pixels, say: adakit feeds ImageNet-normalised floats) or of non-square fixed
    height and width is a `ConfigError` naming the file. ``channels``: the channels the input takes when fixed (a
    model of another number than 3 cannot read image files, which are RGB: `check_rgb_input`)."""

    def __init__(self, model: str | Path, output: str = "feat", threads: int | None = None):
        ort = _onnxruntime()
        self.path = Path(model).expanduser()
        if not self.path.is_file():
            raise DataError(f"ONNX model not found: {self.path}; give an existing .onnx file with --model, or "
                            "a torchvision/timm backbone with --backbone")
        opts = ort.SessionOptions()
        # int8 models on AVX2-only x86 CPUs (an AMD EPYC, measured): onnxruntime's default int8 kernels saturate
        # intermediate sums there, and MobileNetV2-int8 features came out up to 1.3 apart from those of an AVX-512
        # Intel Xeon; with full precision they are equal (0.0 apart on Office-31 dslr)
        opts.add_session_config_entry("session.x64quantprecision", "1")
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        #: what made the features, recorded in the .npz (`save_features`)
        self.origin = f"ONNX {file_record(self.path)}, output {output}"
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise DataError(f"{self.path}: cannot load as an ONNX model ({err})") from None
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if output not in outputs:
            raise DataError(f"{self.path}: no output named {output!r}; its outputs are {outputs}")
        self.input, self.output = inputs[0].name, output
        shape = inputs[0].shape
        #: the input as the model declares it, for messages: name, shape (N for a named or free dimension), type
        self.input_text = (f"its input {inputs[0].name!r} of shape "
                           f"({', '.join(str(d) if isinstance(d, int) else 'N' for d in shape)}), {inputs[0].type}")
        self.input_dtype = ONNX_FLOAT_INPUTS.get(inputs[0].type)
        if self.input_dtype is None:  # (else refused only at the first batch, after reading every image)
            raise ConfigError(f"{self.path}: {self.input_text}, but adakit feeds float32 images (N, 3, H, W) "
                              "normalised with the ImageNet mean and std (converted to float16 or float64 for a model "
                              "taking those); export the model with a float input that takes such images")
        self.channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) and shape[1] > 0 else None
        side = [d if isinstance(d, int) else None for d in shape[-2:]] if len(shape) == 4 else [None, None]
        if None not in side and side[0] != side[1]:  # (else refused only at the first batch, after reading images)
            raise ConfigError(f"{self.path}: its input {inputs[0].name!r} takes {side[0]}×{side[1]} (height × width) "
                              "images, but adakit feeds square centre crops; export the model with a square input "
                              "(or a dynamic height and width)")
        self.image_size = side[1]
        #: a batch size fixed in the model (a model exported for batch 1, say): batches run in chunks of it
        self.fixed_batch = shape[0] if len(shape) == 4 and isinstance(shape[0], int) and shape[0] > 0 else None

    def check_rgb_input(self) -> None:
        """`ConfigError` when the model takes a fixed number of channels other than 3: image files and PIL images are
        read as RGB, and adakit does not make other channels of them (grey from ImageNet-normalised RGB has no one
        meaning); called before any image is read."""
        if self.channels not in (None, 3):
            grey = ", or give compute_features grey arrays (N, 1, H, W)" if self.channels == 1 else ""
            raise ConfigError(f"{self.path}: {self.input_text}, takes {self.channels}-channel images, but adakit "
                              "reads image files as RGB and feeds (N, 3, H, W) batches; export the model with a "
                              f"3-channel input{grey}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if self.fixed_batch is not None and len(x) != self.fixed_batch:
            n, b = len(x), self.fixed_batch
            pad = np.zeros((-n % b, *x.shape[1:]), x.dtype)  # the last chunk filled up; its padding dropped
            chunks = np.concatenate([x, pad]).reshape(-1, b, *x.shape[1:])
            return np.concatenate([self(c) for c in chunks])[:n]
        try:
            out = self.session.run([self.output], {self.input: x})[0]
        except Exception as err:  # shape or type mismatch, reported by onnxruntime
            raise DataError(f"{self.path}: cannot run on a batch of shape {tuple(x.shape)}: {err}") from None
        return out.reshape(len(out), -1).astype(np.float32)


class TorchFeatureExtractor:
    """A frozen torchvision or timm backbone (``model.backbone`` names) in eval mode: pooled features.

    ``weights``: ``imagenet`` (torchvision's weights API / timm's hub; offline, a `ConfigError` names the
    file to place and where), a local state-dict file, or None (random init, for tests). ``device``:
    auto | cpu | cuda | cuda:N.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, weights: str | None = DEFAULT_WEIGHTS,
                 device: str = "auto", threads: int | None = None, image_size: int = 224):
        from adakit.models import backbones as bb
        from adakit.models.backbones import IMAGE_BACKBONES, IMAGENET, build_backbone, check_backbone_name

        try:
            check_backbone_name(backbone)
        except ValueError as err:
            raise ConfigError(f"--backbone: {err}") from None
        if not (backbone.startswith("timm/") or (backbone in IMAGE_BACKBONES and backbone != "lenet")):
            raise ConfigError(f"--backbone {backbone!r}: feature caching needs an ImageNet-style image backbone "
                              "(resnet18/34/50/101, mobilenet_v2, vit_b_16 or timm/<name>)")
        if threads:
            torch.set_num_threads(threads)
        self.device = check_device(device, "--device")
        self.name, self.image_size = backbone, image_size
        cfg = SimpleNamespace(backbone=backbone, weights=weights, hidden_dim=0, dropout=0.0)
        self.net = build_backbone(cfg, (3, image_size, image_size)).eval().to(self.device)
        if weights == IMAGENET:  # which ImageNet weights: another torchvision / timm version may give others
            made = f"{IMAGENET} ({bb.imagenet_weights_name(backbone, self.net)})"
        else:  # a state-dict file: named by its bytes, not the path as typed
            made = file_record(Path(weights).expanduser()) if weights else "none (random)"
        #: what made the features, recorded in the .npz (`save_features`)
        self.origin = f"{backbone}, weights {made}"

    @torch.no_grad()
    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        out = self.net(torch.as_tensor(x, dtype=torch.float32).to(self.device))
        return out.float().reshape(len(out), -1).cpu().numpy()


def extract_features(domain: Domain, extractor, batch_size: int = 64,
                     show_progress: bool = True) -> np.ndarray:
    """Features (N, d) of every sample of ``domain`` (evaluation transform), in order; ``extractor`` maps a
    float batch (N, 3, H, W) to (N, d) (`TorchFeatureExtractor` or `OnnxFeatureExtractor`)."""
    n = len(domain)
    starts = range(0, n, batch_size)
    feats = []
    channels = input_channels(extractor)
    torch_input = isinstance(extractor, (TorchFeatureExtractor, ModuleFeatureExtractor))
    with progress_bar(len(starts), f"features {domain.name}", enabled=show_progress) as bar:
        for s in starts:
            x = domain.load(np.arange(s, min(s + batch_size, n)), train=False)
            if x.dim() == 4 and x.shape[1] == 1 and channels == 3:
                x = x.expand(-1, 3, -1, -1)  # grey as RGB, as grey image files are read
            if s == 0:  # once: a domain's batches share its samples' shape
                _check_first_batch(x, extractor)
            feats.append(extractor(x if torch_input else x.numpy()))
            bar.advance()
    feat = np.concatenate(feats)
    bad = ~np.isfinite(feat).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"the model gave NaN/inf features for {int(bad.sum())} images, e.g. {domain.describe(i)}")
    return feat


def _check_first_batch(x: torch.Tensor, extractor: Any) -> None:
    """`DataError` when a batch's shape is not what ``extractor`` takes (a named backbone: RGB (N, 3, H, W); an ONNX
    model of fixed channels: those), before it runs."""
    if isinstance(extractor, TorchFeatureExtractor) and (x.dim() != 4 or x.shape[1] != 3):
        raise DataError(f"images: a batch of shape {tuple(x.shape)}, but {extractor.name} takes RGB images "
                        "(N, 3, H, W); give grey images (N, H, W) as x[:, None], one image (C, H, W) as "
                        "x[None], RGBA without its alpha (x[:, :3]), or image files / PIL images (read as "
                        "RGB, transparency on white)")
    c = extractor.channels if isinstance(extractor, OnnxFeatureExtractor) else None
    if c is not None and (x.dim() != 4 or x.shape[1] != c):
        raise DataError(f"images: a batch of shape {tuple(x.shape)}, but the ONNX model {extractor.path} takes "
                        f"(N, {c}, H, W) ({extractor.input_text}); give images of {c} channels, or use a model "
                        "that takes yours")


class ModuleFeatureExtractor:
    """Your own ``nn.Module`` as a frozen feature extractor: eval mode, ``torch.no_grad``, outputs flattened to
    (N, d); on ``device`` (auto: CUDA when available)."""

    def __init__(self, module: torch.nn.Module, device: str = "auto"):
        self.device = check_device(device, "--device")
        self.net = module.to(self.device)

    @torch.no_grad()
    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        was = self.net.training
        self.net.eval()
        try:
            out = self.net(torch.as_tensor(x, dtype=torch.float32).to(self.device))
        finally:
            self.net.train(was)  # your module's mode as it was
        if isinstance(out, (tuple, list)):  # (features, logits) as adakit's models return: the features
            out = out[0]
        return out.float().reshape(len(out), -1).cpu().numpy()


def compute_features(images, *, backbone: str | torch.nn.Module | None = None, weights: str | None = DEFAULT_WEIGHTS,
                     model: str | Path | None = None, output: str = "feat", device: str = "auto",
                     batch_size: int = 64, image_size: int | None = None, resize: int | None = None,
                     threads: int | None = None, show_progress: bool = False) -> np.ndarray:
    """Features (N, d) of ``images`` from a frozen backbone, in order, as a numpy array (`cache_features` writes
    them to a file instead).

    ``images``: an image folder (``<class>/<image>`` or any depth of images) or an image-list file (``.txt``), a
    list of image paths or PIL images (read as adakit reads image files: EXIF orientation, white under
    transparency, resize the shorter side to ``resize``, center crop ``image_size``, ImageNet mean/std), one image
    (path or PIL), uint8 arrays or tensors (N, 3, H, W) (scaled to [0, 1] and ImageNet-normalised as image files
    are, but used at their size: resize them yourself), or float arrays and torch Datasets of ``x`` or ``(x, y)``
    (used as they are, uint8 items scaled to [0, 1]: preprocess them as the backbone expects; PIL items are read
    as image files are). Grey images (N, 1, H, W) are repeated to 3 channels when the model takes 3 (a named
    backbone, or your module's first ``Conv2d``), as grey image files are. Your module's training mode is restored
    afterwards.
    ``backbone``: a torchvision / timm name (with ``weights``) or your own ``nn.Module`` (its output, or the first
    of a tuple, flattened); ``model``: an ONNX file instead (``output``: its feature output). Default:
    `DEFAULT_BACKBONE` with ImageNet weights.
    """
    from PIL import Image

    from adakit.config import DataConfig
    from adakit.data import images as img
    from adakit.data.domain import TensorDomain
    from adakit.data.objects import as_domain
    from adakit.data.transforms import normalize_uint8_images

    if model is not None and backbone is not None:
        raise ConfigError("give either model= (an ONNX file) or backbone= (a model name or your nn.Module), not both")
    if isinstance(backbone, torch.nn.Module):
        if threads:
            torch.set_num_threads(threads)
        extractor, size = ModuleFeatureExtractor(backbone, device), image_size or 224
    else:
        files = isinstance(images, (str, Path, Image.Image)) or (isinstance(images, (list, tuple)) and bool(images)
                                                                 and all(isinstance(i, (str, Path, Image.Image))
                                                                         for i in images))
        extractor, size = _extractor(model, output, backbone, weights, device, threads, image_size, rgb=files)
    cfg = DataConfig(format="image_folder", source="input", target="input", image_size=size, resize=resize)
    size, resize = img._sizes(cfg)
    if isinstance(images, Image.Image):
        images = [images]  # one image
    if isinstance(images, (str, Path)):  # a folder, one image, or an image list (any other file)
        path = Path(images).expanduser()
        as_list = path.is_file() and path.suffix.lower() not in img.IMAGE_EXTENSIONS
        domain = img.read_image_inputs(path, size, resize, cfg, image_list=as_list)
        if domain is None:
            raise DataError(f"images={str(images)!r}: no such image folder or image-list file (nor an image file)")
    elif isinstance(images, (list, tuple)) and images and all(isinstance(i, (str, Path, Image.Image)) for i in images):
        domain = img.image_inputs(list(images), size, resize)
    else:
        images = _integer_pixels_as_uint8(images)
        domain = as_domain(images, "input", image_size=size, resize=resize)
        if isinstance(domain, TensorDomain) and domain.x.dim() == 4 and domain.x.shape[1] not in (1, 3) \
                and domain.x.shape[3] in (1, 3):
            raise DataError(f"images: an array of shape {tuple(domain.x.shape)} looks channels-last; give (N, C, H, W) "
                            "(e.g. x.transpose(0, 3, 1, 2)), or the image files / PIL images")
        if isinstance(domain, TensorDomain) and domain.x.dim() == 4 and domain.x.shape[1] == 1 \
                and input_channels(extractor) == 3:
            domain.x = domain.x.expand(-1, 3, -1, -1)  # grey as RGB, as grey image files are read
        if isinstance(domain, TensorDomain) and domain.x.dtype == torch.uint8 and domain.x.dim() == 4 \
                and domain.x.shape[1] == 3:
            domain.x = normalize_uint8_images(domain.x)
    if len(domain) == 0:
        raise DataError("images: no images to compute features of")
    return extract_features(domain, extractor, batch_size, show_progress)


def input_channels(extractor: Any) -> int | None:
    """The channels ``extractor`` takes: 3 for a named backbone, an ONNX model's input when fixed (else 3), your
    module's first ``Conv2d`` (None without one)."""
    if isinstance(extractor, ModuleFeatureExtractor):
        conv = next((m for m in extractor.net.modules() if isinstance(m, torch.nn.Conv2d)), None)
        return None if conv is None else conv.in_channels
    if isinstance(extractor, OnnxFeatureExtractor):
        return extractor.channels or 3
    return 3


def _extractor(model: str | Path | None, output: str | None, backbone: str | None, weights: str | None,
               device: str, threads: int | None, image_size: int | None, rgb: bool = True) -> tuple[Any, int | None]:
    """The feature extractor (an ONNX file, else a named backbone) and the crop size it takes; an ONNX model of a
    fixed input size refuses another ``image_size``, and with ``rgb`` (image files or PIL images to read) one of
    fixed channels other than 3 is refused, before any image is read."""
    if model is None:
        size = image_size or 224
        return TorchFeatureExtractor(backbone or DEFAULT_BACKBONE, weights, device, threads, size), size
    extractor = OnnxFeatureExtractor(model, output, threads)
    if rgb:
        extractor.check_rgb_input()
    fixed = extractor.image_size
    if image_size is not None and fixed is not None and image_size != fixed:
        raise ConfigError(f"--image-size {image_size}: the ONNX model {model} takes {fixed}×{fixed} images; leave "
                          f"--image-size out (or give {fixed})")
    return extractor, image_size or fixed


def _integer_pixels_as_uint8(images: Any) -> Any:
    """An integer image array (N, C, H, W) of another type than uint8 (``torch.randint`` gives int64) holds 0..255
    pixels as uint8 does: it gets the same scaling and normalisation; other integer values are a `DataError`."""
    dtype = getattr(images, "dtype", None)
    if dtype is None or getattr(images, "ndim", 0) != 4:
        return images
    is_int = (dtype.is_floating_point is False and dtype not in (torch.uint8, torch.bool)) \
        if isinstance(images, torch.Tensor) else (np.dtype(dtype).kind in "iu" and np.dtype(dtype) != np.uint8)
    if not is_int or not len(images):
        return images
    low, high = int(images.min()), int(images.max())
    if low < 0 or high > 255:
        raise DataError(f"images: integer pixels from {low} to {high}; give uint8 pixels (0..255) or float images "
                        "already preprocessed for the backbone")
    return images.to(torch.uint8) if isinstance(images, torch.Tensor) else np.asarray(images, dtype=np.uint8)


def image_root(domain: Domain) -> Path | None:
    """The folder every image of ``domain`` is ``root/id`` under (absolute), or None."""
    paths = getattr(domain, "paths", None)
    if paths is None or not len(paths):
        return None
    first, rel = Path(str(paths[0])), Path(str(domain.ids[0]))
    n = len(rel.parts)
    if rel.is_absolute() or len(first.parts) <= n or Path(*first.parts[-n:]) != rel:
        return None
    root = Path(*first.parts[:-n])
    if any(Path(str(p)) != root / str(i) for p, i in zip(paths, domain.ids)):
        return None
    return root.resolve()


def save_features(path: str | Path, feat: np.ndarray, domain: Domain, origin: str | None = None,
                  whole_folder: bool = False, overwrite: bool = True, image_list: str | Path | None = None) -> Path:
    """Write the ``.npz`` the ``npz`` loader reads (``feat``, ``y``, ``classes``, plus ``ids`` and, when known,
    ``image_root``, ``extractor``: what made the features, so that a source and a target extracted in two ways
    are refused together, ``whole_folder``: the rows are every image of the image folder ``image_root``, so
    that images added to it later are noticed, and ``image_bytes``: each image file's size, so that an image
    replaced or edited in place later is noticed; ``image_list``: the image-list file the rows and labels come
    from, recorded by path and sha256, so that a list edited later is noticed). With ``overwrite=False`` a file at
    ``path`` is never replaced, even one another process wrote while this one worked (a `ConfigError`)."""
    from adakit.rundir import replaced_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = image_root(domain)
    extra = {} if root is None else {"image_root": np.asarray(str(root))}
    if root is not None and whole_folder:
        extra["whole_folder"] = np.asarray(True)
    if root is not None:  # each image's size in bytes: an image edited in place later is noticed when loading
        extra["image_bytes"] = np.asarray([os.path.getsize(str(p)) for p in domain.paths], dtype=np.int64)
    if origin is not None:
        extra["extractor"] = np.asarray(origin)
    if image_list is not None:
        extra["image_list"] = np.asarray(file_record(Path(image_list).expanduser().resolve(), full_path=True))
    with replaced_atomically(path, binary=True, replace=overwrite) as fh:
        np.savez(fh, feat=feat.astype(np.float32), y=np.asarray(domain.y, dtype=np.int64),
                 classes=np.asarray(domain.classes, dtype=str), ids=np.asarray(domain.ids, dtype=str), **extra)
    return path


def cache_features(images: str | Path, out: str | Path, model: str | Path | None = None, output: str = "feat",
                   fmt: str = "image_folder", batch_size: int = 64, image_size: int | None = None,
                   resize: int | None = None, threads: int | None = None, verify: bool = True,
                   show_progress: bool = True, backbone: str | None = None, weights: str | None = DEFAULT_WEIGHTS,
                   device: str = "auto", overwrite: bool = False) -> tuple[Path, tuple[int, int]]:
    """Load an image domain (folder or list file), extract features, write ``out``; returns (path, shape).

    ``model`` (an ONNX file) or ``backbone`` (torchvision/timm name with ``weights``); with neither, the
    default `DEFAULT_BACKBONE` with ImageNet weights. An existing ``out`` is replaced only with ``overwrite``
    (checked before any work: it may be a feature file made another way, or with another backbone).
    """
    from adakit.config import DataConfig
    from adakit.data.images import _sizes, load_image_folder, load_image_list
    from adakit.rundir import existing_ancestor

    if model is not None and backbone is not None:
        raise ConfigError("give either --model (an ONNX file) or --backbone (a torchvision/timm model), not both")
    images = Path(images).expanduser()
    dest = Path(out).expanduser()
    if dest.is_dir():
        raise ConfigError(f"{dest} is a folder: give the .npz file to write, e.g. {dest / 'features.npz'}")
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest} exists: add --force (overwrite=True) to replace it, or choose another file")
    blocker = existing_ancestor(dest)
    if not blocker.is_dir():
        raise ConfigError(f"--out {dest}: {blocker} is a file, not a folder; choose another path")
    if not os.access(blocker, os.W_OK | os.X_OK):  # (before the extraction, which may take hours)
        raise ConfigError(f"--out {dest}: the folder {blocker} is not writable; choose a writable path")
    if not images.exists():
        raise DataError(f"{images}: no such {'image-list file' if fmt == 'image_list' else 'image folder'}")
    if fmt == "image_folder" and images.is_file():
        raise DataError(f"{images} is a file: give an image folder (<class>/<image>), or an image-list file with "
                        "--list (fmt='image_list'); adakit.features.compute_features also takes single images")
    extractor, size = _extractor(model, output, backbone, weights, device, threads, image_size)
    name = images.stem if fmt == "image_list" else images.name
    cfg = DataConfig(format=fmt, source=name, target=name, image_size=size, resize=resize, verify_images=verify)
    loader = load_image_list if fmt == "image_list" else load_image_folder
    domain = loader(images, name, cfg=cfg)
    feat = extract_features(domain, extractor, batch_size, show_progress)
    size, resize = _sizes(cfg)
    origin = f"{extractor.origin}; images resized to {resize}, centre crop {size}"
    return save_features(dest, feat, domain, origin, whole_folder=fmt == "image_folder", overwrite=overwrite,
                         image_list=images if fmt == "image_list" else None), feat.shape
