"""Input images (the first frame of an image→video job), handled as hostile input.

A member's attachment is untrusted bytes. Before anything is decoded: the byte size is capped, the
format is read from the bytes (not from the file name or the declared content type) and must be
PNG, JPEG or WebP, and the pixel count is read from the header — a small file that would decode to
14000×14000 pixels is refused without decoding it. Then the first frame (of an animated WebP) is
decoded, turned upright by its EXIF orientation, flattened to RGB (transparency over black), and
stored as a PNG no larger than ``STORED_LONG_SIDE`` on its long side, which is what the job carries.

Decoding is bounded in memory, per picture and per process. A JPEG is decoded at a reduced size
(``draft``: 1/2 to 1/8 of each side, from the compressed data); Pillow has no reduced decode for PNG
or WebP, so those are decoded whole and refused, from the header, above ``decode_budget`` bytes
(``DECODE_BYTES_PER_PIXEL``: WebP costs four times PNG). After the decode the picture is
flattened and box-reduced a strip at a time, so no second full-size copy is made. ``Decoder`` runs
the decodes of a process in a pool of its own, one (or a few) at a time: however many members send
pictures at once, the bot holds at most that many decodes.

Fitting to the model's size (``fit``) crops the centre to the target aspect ratio and resizes:
no black bars in the video; the edges of a very wide or tall picture are cut.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
from concurrent.futures import ThreadPoolExecutor
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
#: Default cap (settings override it) on the memory one picture's decode may take: a PNG of
#: 4096×4096 (twice the stored size on each side), a WebP of 2048×2048.
DECODE_BUDGET = 64 * 1024 * 1024
#: What Pillow 13 holds per decoded pixel, at the peak of the decode (measured: ``load()`` of a
#: 4096×4096 picture). PNG and JPEG: the image itself (RGB is stored as 4 bytes). WebP: libwebp's
#: animation decoder keeps two canvases, hands over a copy, and the image is a fourth.
DECODE_BYTES_PER_PIXEL = {"PNG": 4, "JPEG": 4, "WebP": 16}
#: Where Pillow keeps what ``ImageOps.exif_transpose`` reads: EXIF, and XMP by each format's name.
ORIENTATION_INFO = ("exif", "xmp", "XML:com.adobe.xmp")
#: Rows flattened and reduced at a time after the decode (a few MB of a very wide picture).
STRIP_ROWS = 256


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


def too_large(size: int, limit: int) -> ImageRejected:
    """A picture of ``size`` bytes over the ``limit``: by its bytes, or by what Discord or the CDN
    declared before a byte was fetched."""
    return ImageRejected(
        msg(
            "That picture is too large ({size} MB); the limit is {limit} MB. "
            "Please send a smaller PNG, JPEG or WebP picture.",
            size=Number(round(size / (1024 * 1024), 1)),
            limit=_mb(limit),
        )
    )


def check_header(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    decode_budget: int = DECODE_BUDGET,
) -> tuple[str, int, int]:
    """Format and size read from the header only (nothing is decoded): refused when the file, the
    pixel count or the memory its decode would take is over the caps. Raises ``ImageRejected``."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    if not data:
        raise ImageRejected(msg("That attachment is empty. Please attach a PNG, JPEG or WebP picture."))
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header, decodes nothing
            fmt, (w, h) = (im.format or "?"), im.size
            if fmt in ("JPEG", "MPO") and w > 0 and h > 0:
                _draft(im)  # the size a JPEG will be decoded at (header only)
            decoded = im.size
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
    name = ACCEPTED_FORMATS[fmt]
    per_pixel = DECODE_BYTES_PER_PIXEL[name]
    if decoded[0] * decoded[1] * per_pixel > decode_budget:
        limit = decode_budget // per_pixel  # pixels of this format that fit
        side = math.isqrt(limit)
        values = {
            "format": name,
            "width": w,
            "height": h,
            "limit": Number(round(limit / 1e6, 1)),
            "side": side,
        }
        if name == "JPEG":
            raise ImageRejected(
                msg(
                    "That JPEG picture is {width}×{height} pixels, more than I can read. "
                    "Please send a smaller picture.",
                    **values,
                )
            )
        raise ImageRejected(
            msg(
                "That {format} picture is {width}×{height} pixels; I can read {format} pictures of up to "
                "{limit} megapixels ({side}×{side}). Please send a smaller picture, or save it as JPEG.",
                **values,
            )
        )
    return name, w, h


def _draft(im: Image.Image) -> None:
    """JPEG: have Pillow decode at the smallest scale (1/2 … 1/8) still at least ``STORED_LONG_SIDE``
    on the long side; any other format is left as it is (Pillow decodes those whole)."""
    long = max(im.size)
    if long > STORED_LONG_SIDE:
        w, h = im.size
        im.draft("RGB", (max(1, w * STORED_LONG_SIDE // long), max(1, h * STORED_LONG_SIDE // long)))


def prepare(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    decode_budget: int = DECODE_BUDGET,
) -> PreparedImage:
    """Check, decode the first frame, orient, flatten to RGB and re-encode as PNG. Raises ``ImageRejected``.

    The memory it takes is the decode (at most ``decode_budget``) plus the picture reduced to about
    ``STORED_LONG_SIDE``; one under twice that size with transparency or a palette is flattened whole
    (at most twice the budget).
    """
    fmt, _, _ = check_header(data, max_bytes=max_bytes, max_pixels=max_pixels, decode_budget=decode_budget)
    try:
        im = Image.open(io.BytesIO(data))
        try:
            im.seek(0)  # the first frame of an animated image
            _draft(im)
            im.load()
            rgb = _reduced_rgb(im)
            # Only the orientation comes along (for exif_transpose below): a palette's transparency or
            # a CMYK colour profile would be wrong on the RGB copy.
            rgb.info = {k: v for k, v in im.info.items() if k in ORIENTATION_INFO}
        finally:
            im.close()  # the full-size decode is released before the resize below
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise ImageRejected(
            msg(
                "That picture is damaged and could not be read. Please attach another PNG, JPEG or WebP image."
            )
        ) from None
    rgb.thumbnail((STORED_LONG_SIDE, STORED_LONG_SIDE), Image.Resampling.LANCZOS)
    ImageOps.exif_transpose(rgb, in_place=True)
    out = io.BytesIO()
    rgb.save(out, format="PNG", optimize=False, compress_level=6)
    return PreparedImage(out.getvalue(), rgb.width, rgb.height, fmt)


def _reduced_rgb(im: Image.Image) -> Image.Image:
    """``im`` as RGB (transparency over black), box-reduced by the whole factor that keeps it at least
    ``STORED_LONG_SIDE`` long; ``STRIP_ROWS`` rows at a time, so the full-size picture is never copied.

    Flattening before averaging is exact: over black, a pixel counts by its opacity."""
    w, h = im.size
    factor = max(1, max(w, h) // STORED_LONG_SIDE)
    if factor == 1 and im.mode == "RGB":
        im.thumbnail((STORED_LONG_SIDE, STORED_LONG_SIDE), Image.Resampling.LANCZOS)
        return im.copy()  # resized in place first: what is copied (to outlive the file) is small
    out = Image.new("RGB", (-(-w // factor), -(-h // factor)))
    step = factor * max(1, STRIP_ROWS // factor)
    for top in range(0, h, step):
        strip = _flatten(im.crop((0, top, w, min(h, top + step))))
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, top // factor))
    return out


class Decoder:
    """``prepare`` for a whole process, in a thread pool of its own with ``workers`` threads: however
    many pictures arrive at once, at most ``workers`` are decoded at a time (each within its budget);
    the others wait their turn, holding only their compressed bytes. Not the event loop's default
    pool, whose threads (and malloc arenas) other work shares."""

    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="picture-decode")

    async def prepare(
        self, data: bytes, *, max_bytes: int, max_pixels: int, decode_budget: int
    ) -> PreparedImage:
        """``prepare(data, …)`` in the pool. Raises ``ImageRejected``."""
        call = functools.partial(
            prepare, data, max_bytes=max_bytes, max_pixels=max_pixels, decode_budget=decode_budget
        )
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Stop taking pictures; one being decoded finishes in its thread, the waiting ones are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)


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
