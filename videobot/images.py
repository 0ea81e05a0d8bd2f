"""Input images (the first frame of an image→video job), handled as hostile input.

A member's attachment is untrusted bytes. Before anything is decoded: the byte size is capped, the
format is read from the bytes (not from the file name or the declared content type) and must be
PNG, JPEG or WebP, and the pixel count is read from the header — a small file that would decode to
14000×14000 pixels is refused without decoding it. Then the first frame (of an animated WebP) is
decoded, turned upright by its EXIF orientation, flattened to RGB (transparency over black), and
stored as a PNG no larger than ``STORED_LONG_SIDE`` on its long side, which is what the job carries.

Fitting to the model's size (``fit``) crops the centre to the target aspect ratio and resizes:
no black bars in the video; the edges of a very wide or tall picture are cut.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from videobot.errors import InvalidParameters
from videobot.i18n import Number, msg

ACCEPTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "MPO": "JPEG"}
#: Default caps (settings override them): bytes of the file, pixels of the decoded image.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
#: The stored copy is at most this long on its long side (models take ≤ 1280 px anyway).
STORED_LONG_SIDE = 2048


class ImageRejected(InvalidParameters):
    """The attachment cannot be used; the message says why and what to do."""

    code = "bad_image"


@dataclass(frozen=True)
class PreparedImage:
    """The normalised input image: upright RGB, as PNG bytes."""

    png: bytes
    width: int
    height: int
    source_format: str


def _mb(n: int) -> Number:
    """Whole megabytes (MiB) as a number in the reader's locale."""
    return Number(round(n / (1024 * 1024)))


def check_header(
    data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[str, int, int]:
    """Format and size read from the header only (nothing is decoded). Raises ``ImageRejected``."""
    if len(data) > max_bytes:
        raise ImageRejected(
            msg(
                "That image is too large ({size} MB); the limit is {limit} MB. Please send a smaller picture.",
                size=_mb(len(data)),
                limit=_mb(max_bytes),
            )
        )
    if not data:
        raise ImageRejected(msg("That attachment is empty. Please attach a PNG, JPEG or WebP picture."))
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header, decodes nothing
            fmt, (w, h) = (im.format or "?"), im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageRejected(
            msg("That attachment is not a picture I can read. Please attach a PNG, JPEG or WebP image.")
        ) from None
    except Image.DecompressionBombError:
        raise ImageRejected(
            msg(
                "That image has far too many pixels. "
                "Please send a picture of at most a few thousand pixels on each side."
            )
        ) from None
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRejected(
            msg("{format} images are not supported. Please attach a PNG, JPEG or WebP picture.", format=fmt)
        )
    if w <= 0 or h <= 0 or w * h > max_pixels:
        raise ImageRejected(
            msg(
                "That image is {width}×{height} pixels, more than I can take ({limit} megapixels). "
                "Please send a smaller picture.",
                width=w,
                height=h,
                limit=Number(round(max_pixels / 1e6)),
            )
        )
    return ACCEPTED_FORMATS[fmt], w, h


def prepare(
    data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> PreparedImage:
    """Check, decode the first frame, orient, flatten to RGB and re-encode as PNG. Raises ``ImageRejected``."""
    fmt, w, h = check_header(data, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)  # the first frame of an animated image
            im.draft("RGB", (STORED_LONG_SIDE, STORED_LONG_SIDE))  # JPEG: decode at reduced size when large
            frame = ImageOps.exif_transpose(im.copy())
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise ImageRejected(
            msg(
                "That picture is damaged and could not be read. Please attach another PNG, JPEG or WebP image."
            )
        ) from None
    rgb = _flatten(frame)
    rgb.thumbnail((STORED_LONG_SIDE, STORED_LONG_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="PNG", optimize=False, compress_level=6)
    return PreparedImage(out.getvalue(), rgb.width, rgb.height, fmt)


def _flatten(im: Image.Image) -> Image.Image:
    """RGB; transparent parts over black (the colour of an empty video frame)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def nearest_aspect(width: int, height: int, ratios: tuple[str, ...]) -> str:
    """The offered aspect ratio (``"16:9"``, …) closest to ``width``×``height`` (compared in log space)."""
    import math

    def value(r: str) -> float:
        a, b = r.split(":")
        return float(a) / float(b)

    target = math.log(width / height)
    return min(ratios, key=lambda r: abs(math.log(value(r)) - target))


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Crop the centre to ``width``:``height`` and resize to exactly that size."""
    return ImageOps.fit(
        image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5)
    )


def pixel_digest(image: Image.Image) -> str:
    """sha256 of an image's size and RGB pixels: which picture conditioned a video (logged by the worker)."""
    import hashlib

    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def open_png(png: bytes) -> Image.Image:
    """A stored input image (from ``prepare``) as an RGB PIL image."""
    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGB")
