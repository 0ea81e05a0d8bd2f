"""Input images are hostile input: refused before decoding when they lie about their size."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from videobot.images import ImageRejected, check_header, fit, nearest_aspect, open_png, prepare


def png_bytes(w: int, h: int, color=(200, 30, 30), mode: str = "RGB") -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    Image.new(mode, (w, h), color).save(out, format="PNG")
    return out.getvalue()


def bomb_png(w: int = 14000, h: int = 14000) -> bytes:
    """A valid PNG header claiming ``w``×``h`` with a tiny (truncated) body: a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_the_header() -> None:
    data = bomb_png()
    assert len(data) < 1000
    with pytest.raises(ImageRejected, match="pixels"):
        prepare(data)
    # Under PIL's own bomb threshold but over ours: our check, with the size in the message.
    with pytest.raises(ImageRejected, match="9000×9000 pixels"):
        prepare(bomb_png(9000, 9000))


def test_non_image_bytes_and_oversize_files_are_refused_politely() -> None:
    with pytest.raises(ImageRejected, match="not a picture I can read"):
        prepare(b"%PDF-1.7 this is not an image" * 10)
    with pytest.raises(ImageRejected, match="too large"):
        prepare(png_bytes(64, 64), max_bytes=100)
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    with pytest.raises(ImageRejected, match="GIF images are not supported"):
        prepare(gif.getvalue())


def test_exif_orientation_is_applied_and_transparency_flattened() -> None:
    # A 40×20 JPEG whose EXIF says "rotate 90°": it is shown (and must be used) as 20×40.
    im = Image.new("RGB", (40, 20), (0, 120, 250))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    im.save(out, format="JPEG", exif=exif.tobytes())
    prepared = prepare(out.getvalue())
    assert (prepared.width, prepared.height) == (20, 40) and prepared.source_format == "JPEG"
    assert open_png(prepared.png).size == (20, 40)
    rgba = prepare(png_bytes(10, 10, (255, 255, 255, 0), mode="RGBA"))
    assert open_png(rgba.png).getpixel((5, 5)) == (0, 0, 0)


def test_first_frame_of_an_animated_webp() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    first = open_png(prepare(out.getvalue()).png).getpixel((8, 8))
    assert first[0] > 200 and first[1] < 50


def test_aspect_ratio_and_fit() -> None:
    ratios = ("16:9", "9:16", "1:1")
    assert nearest_aspect(1920, 1080, ratios) == "16:9"
    assert nearest_aspect(1080, 1920, ratios) == "9:16"
    assert nearest_aspect(1000, 900, ratios) == "1:1"
    assert check_header(png_bytes(300, 100)) == ("PNG", 300, 100)
    wide = Image.new("RGB", (300, 100), (10, 10, 10))
    wide.paste((250, 250, 250), (100, 0, 200, 100))  # a bright centre third
    fitted = fit(wide, 48, 48)
    assert fitted.size == (48, 48)
    assert fitted.getpixel((24, 24))[0] > 200  # the centre is kept, the sides cropped
