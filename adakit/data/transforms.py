"""Image transforms: the domain-adaptation field's standard ImageNet pre-processing.

Evaluation: resize the shorter side to ``resize`` (256), center crop ``image_size`` (224).
Training: resize the shorter side to ``resize``, random crop ``image_size``, random horizontal flip.
Strong (LADA's PAA): the training transform with RandAugment(n=1, m=2) on the cropped PIL image.
All end with ImageNet mean/std normalisation, the statistics every ImageNet-pretrained backbone expects.
"""

from __future__ import annotations

from functools import lru_cache

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224


def default_resize(image_size: int) -> int:
    """The 256/224 ratio of the ImageNet recipe: 256 for 224, 128 for 112, ..."""
    return int(round(image_size * 256 / 224))


def normalize_uint8_images(x):
    """uint8 images (N, 3, H, W) as the float tensor the image transforms make of pixels: scaled to [0, 1], then
    ImageNet mean/std (no resize or crop)."""
    import torch

    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (torch.as_tensor(x).float() / 255.0 - mean) / std


@lru_cache(maxsize=16)
def image_transform(train: bool, image_size: int = DEFAULT_IMAGE_SIZE, resize: int | None = None):
    """PIL image -> normalised float tensor (3, image_size, image_size)."""
    import torchvision.transforms as T

    resize = resize or default_resize(image_size)
    if resize < image_size:
        raise ValueError(f"resize={resize} is smaller than image_size={image_size}")
    crop = [T.RandomCrop(image_size), T.RandomHorizontalFlip()] if train else [T.CenterCrop(image_size)]
    return T.Compose([T.Resize(resize), *crop, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@lru_cache(maxsize=16)
def strong_image_transform(image_size: int = DEFAULT_IMAGE_SIZE, resize: int | None = None):
    """The training transform plus RandAugment(num_ops=1, magnitude=2) before normalisation (LADA's strong view)."""
    import torchvision.transforms as T

    train = image_transform(True, image_size, resize).transforms
    return T.Compose([*train[:-2], T.RandAugment(num_ops=1, magnitude=2), *train[-2:]])
