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


def picture_bytes(w: int, h: int, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(out, format=fmt, **save)
    return out.getvalue()


def test_lossless_pictures_over_the_decode_budget_are_refused_from_the_header_saying_the_limit() -> None:
    # PNG costs 4 bytes a pixel to decode, WebP 16: with the default 64 MiB, 4096×4096 and 2048×2048.
    with pytest.raises(ImageRejected) as png:
        check_header(bomb_png(6324, 6324))  # 40 MP: under the pixel cap, over the decode budget
    assert str(png.value) == (
        "That PNG picture is 6324×6324 pixels; I can read PNG pictures of up to 16.8 megapixels "
        "(4096×4096). Please send a smaller picture, or save it as JPEG."
    )
    assert check_header(bomb_png(4096, 4096)) == ("PNG", 4096, 4096)
    with pytest.raises(ImageRejected, match=r"WebP pictures of up to 4\.2 megapixels \(2048×2048\)"):
        check_header(picture_bytes(2049, 2048, "WEBP"))
    assert prepare(picture_bytes(2048, 2048, "WEBP")).width == 2048
    # A JPEG is decoded at a reduced size (1/2 … 1/8 of each side): 40 MP passes the same budget.
    assert check_header(picture_bytes(6324, 6324, "JPEG")) == ("JPEG", 6324, 6324)
    # The budget is a setting: half of it halves what is taken.
    with pytest.raises(ImageRejected, match=r"up to 8\.4 megapixels \(2896×2896\)"):
        check_header(bomb_png(4096, 4096), decode_budget=32 * 1024 * 1024)


def test_a_large_transparent_picture_is_flattened_and_reduced_in_strips_exactly_as_whole() -> None:
    from videobot.images import STORED_LONG_SIDE, STRIP_ROWS, _flatten, _reduced_rgb

    # Alpha and colour vary row by row and column by column; the height is not a multiple of a strip.
    w, h = 2 * STORED_LONG_SIDE + 60, 2 * STRIP_ROWS + 37
    rgba = Image.frombytes(
        "RGBA",
        (w, h),
        bytes((x * 7 + y * 13 + c * 50) % 256 for y in range(h) for x in range(w) for c in range(4)),
    )
    reduced = _reduced_rgb(rgba)
    assert reduced.size == ((w + 1) // 2, (h + 1) // 2)
    assert reduced.tobytes() == _flatten(rgba).reduce(2).tobytes()
    # Through prepare: the stored copy is the thumbnail of that, transparency over black.
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    stored = open_png(prepare(out.getvalue()).png)
    assert stored.width == STORED_LONG_SIDE
    assert stored.tobytes() == reduced.resize(stored.size, Image.Resampling.LANCZOS).tobytes()


@pytest.mark.parametrize("width", [30, 3000])
def test_a_palette_png_with_a_transparent_colour_is_flattened_small_or_large(width: int) -> None:
    im = Image.new("P", (width, 40), 1)
    im.putpalette([0, 0, 0, 250, 10, 10] * 128)
    im.paste(0, (0, 0, width // 2, 40))  # the left half in the transparent colour
    out = io.BytesIO()
    im.save(out, format="PNG", transparency=0)
    stored = open_png(prepare(out.getvalue()).png)
    assert stored.getpixel((0, 10)) == (0, 0, 0) and stored.getpixel((stored.width - 1, 10)) == (250, 10, 10)


def test_a_large_jpeg_is_decoded_reduced_and_still_turned_upright() -> None:
    im = Image.new("RGB", (4200, 2100), (0, 120, 250))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°
    out = io.BytesIO()
    im.save(out, format="JPEG", exif=exif.tobytes())
    prepared = prepare(out.getvalue())
    assert (prepared.width, prepared.height) == (1024, 2048) and prepared.source_format == "JPEG"


PEAK_SCRIPT = """
import asyncio, io, resource, sys
from PIL import Image
from videobot import images

def png(w, h):
    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(out, format="PNG", compress_level=1)
    return out.getvalue()

pictures = [png(4096, 4096) for _ in range(6)]  # each at the edge of the default budget

async def main():
    decoder = images.Decoder(int(sys.argv[1]))
    limits = dict(max_bytes=images.MAX_IMAGE_BYTES, max_pixels=images.MAX_IMAGE_PIXELS,
                  decode_budget=images.DECODE_BUDGET)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    done = await asyncio.gather(*(decoder.prepare(p, **limits) for p in pictures))
    decoder.close()
    assert all(d.width == 2048 for d in done)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)

asyncio.run(main())
"""


def test_pictures_arriving_together_are_decoded_one_at_a_time_within_the_budget() -> None:
    """Six 4096×4096 PNGs at once through ``Decoder(1)``: the process's peak grows by about one
    decode (the 64 MiB image and its reduced copy), not six."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, "1"], capture_output=True, text=True, timeout=120, check=True
    )
    grown_mb = int(run.stdout.strip())
    assert grown_mb < 120, f"peak grew by {grown_mb} MB"
