"""Image processor for Frozen: zero-pad to square, resize, rescale, normalize (PIL/NumPy, no torchvision)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs, Unpack

# PIL modes whose pixels are wider than 8 bits: PIL's own convert("RGB") clips them to 255 instead of rescaling.
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class FrozenImageProcessor(PilBackend):
    r"""
    Prepares images for a Frozen vision encoder as the paper did: non-square images are zero-padded (black) to a
    centred square, then resized to `size`, rescaled to [0, 1] and normalized.

    Any PIL mode is accepted (RGBA, LA, P, L, 1, CMYK, 16-bit and float grey): images are converted to RGB, with
    wide-range modes rescaled to 8 bits rather than clipped.

    Args:
        do_pad_to_square (`bool`, *optional*, defaults to `True`): zero-pad to a square before resizing.
        size (`dict`, *optional*, defaults to `{"height": 224, "width": 224}`): output size.
        Other arguments as in transformers' image processors (`do_resize`, `resample`, `do_rescale`,
        `rescale_factor`, `do_normalize`, `image_mean`, `image_std`, `do_convert_rgb`).
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    default_to_square = True
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_pad_to_square = True

    def __init__(self, do_pad_to_square: bool = True, **kwargs: Unpack[ImagesKwargs]):
        super().__init__(**kwargs)
        self.do_pad_to_square = do_pad_to_square

    def process_image(self, image, do_convert_rgb: bool | None = None, input_data_format=None, **kwargs) -> np.ndarray:
        if isinstance(image, Image.Image):
            image = to_rgb(image)
            if self.do_pad_to_square:
                image = shrink_long_side(image, _preshrink_limit(kwargs.get("size") or self.size))
        return super().process_image(
            image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format, **kwargs
        )

    def _preprocess(self, images: list[np.ndarray], *args, **kwargs):
        if self.do_pad_to_square:
            images = [pad_to_square(image) for image in images]
        return super()._preprocess(images, *args, **kwargs)

    def to_dict(self):
        output = super().to_dict()
        output["do_pad_to_square"] = self.do_pad_to_square
        return output


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL image to 8-bit RGB; transparent pixels become black, as padding is."""
    if image.mode in _WIDE_MODES:
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale).astype(np.uint8), mode="L")
    if image.mode == "La":  # premultiplied alpha: PIL converts it to nothing but LA
        image = image.convert("LA")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


# Padding to a square allocates side x side pixels before the resize: a small but very elongated image (a 40000 x 20
# banner, a 1 MB file) would need gigabytes and could kill a training run. Images whose longer side exceeds this
# many times the output size (and at least _PRESHRINK_MIN) are shrunk first; ordinary images are untouched.
_PRESHRINK_FACTOR = 4
_PRESHRINK_MIN = 1024


def _preshrink_limit(size) -> int:
    sides = [value for value in dict(size or {}).values() if isinstance(value, int)]
    return max(_PRESHRINK_MIN, _PRESHRINK_FACTOR * max(sides, default=224))


def shrink_long_side(image: Image.Image, limit: int) -> Image.Image:
    """Downscales `image`, keeping its aspect ratio (each side at least 1 px), so that its longer side is `limit`;
    returns it unchanged when already within the limit."""
    width, height = image.size
    if max(width, height) <= limit:
        return image
    scale = limit / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Zero-pads a channel-first image `(C, H, W)` to a centred square."""
    _, height, width = image.shape
    side = max(height, width)
    if height == width:
        return image
    top = (side - height) // 2
    left = (side - width) // 2
    return np.pad(image, ((0, 0), (top, side - height - top), (left, side - width - left)), mode="constant")


__all__ = ["FrozenImageProcessor"]
