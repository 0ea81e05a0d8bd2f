"""What a job's pipeline run needs besides its JSON parameters: the first-frame image, the clip to extend.

``GenerationParams.image`` / ``source_video`` only name the input. A job's inputs are stored with it in
the database (``job_inputs``) and named ``db:image`` / ``db:video``: the worker, on any machine, gets the
bytes from the queue. Only ``videobot generate`` (a local command) names files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from videobot.errors import InvalidParameters
from videobot.i18n import N_, msg
from videobot.presets import GenerationParams

MAX_INPUT_BYTES = 64 * 1024 * 1024


def decode_image(data: bytes) -> Any:  # -> PIL.Image.Image
    """PNG/JPEG/WebP bytes to an RGB PIL image, or ``InvalidParameters`` saying what is wrong."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidParameters(
            msg("The image could not be read: upload a PNG, JPEG or WebP picture.")
        ) from None


def decode_clip(data: bytes) -> np.ndarray:
    """mp4 bytes to uint8 frames (F, H, W, 3), or ``InvalidParameters``."""
    import av

    from generator.encode import probe_mp4

    try:
        frames = probe_mp4(data, decode=True)["frames"]
    except (av.FFmpegError, IndexError, ValueError, OSError):
        raise InvalidParameters(msg("The clip to extend could not be read as an mp4 video.")) from None
    if len(frames) < 2:
        raise InvalidParameters(msg("The clip to extend has fewer than two frames."))
    return frames


#: A reference to bytes stored with the job: ``db:image``, ``db:video``.
DB_REF = "db:"


def db_ref(kind: str) -> str:
    return DB_REF + kind


#: What members read when an input is missing or too large, by input (``image`` / ``clip``).
_GONE = {
    "image": N_("The image is no longer available; please send it again."),
    "clip": N_("The clip to extend is no longer available; please send it again."),
}
_TOO_LARGE = {
    "image": N_("The image is larger than {limit} MB."),
    "clip": N_("The clip to extend is larger than {limit} MB."),
}


def _read(ref: str, what: str, blobs: dict[str, bytes] | None, allow_files: bool) -> bytes:
    if ref.startswith(DB_REF):
        data = (blobs or {}).get(ref[len(DB_REF) :])
        if data is None:
            raise InvalidParameters(msg(_GONE[what]))
        return data
    if not allow_files:
        raise InvalidParameters(msg(_GONE[what]))
    path = Path(ref)
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InvalidParameters(msg(_TOO_LARGE[what], limit=MAX_INPUT_BYTES // 1024 // 1024))
        return path.read_bytes()
    except OSError:
        raise InvalidParameters(msg(_GONE[what])) from None


def load_inputs(
    params: GenerationParams, blobs: dict[str, bytes] | None = None, *, allow_files: bool = False
) -> dict[str, Any]:
    """Keyword arguments for ``VideoPipeline.run`` (``image=`` / ``video=``, and ``end_image=`` when the
    video ends on a picture) for the job's verb; empty for text.

    ``blobs`` are the job's stored inputs; file paths are read only with ``allow_files`` (the local CLI).
    """
    end: dict[str, Any] = {}
    if params.end_image and params.verb != "extend":
        end = {"end_image": decode_image(_read(params.end_image, "image", blobs, allow_files))}
    if params.verb == "image":
        if not params.image:
            raise InvalidParameters(msg("A video from an image needs the image."))
        return {"image": decode_image(_read(params.image, "image", blobs, allow_files))} | end
    if params.verb == "extend":
        if not params.source_video:
            raise InvalidParameters(msg("Extending a clip needs the clip."))
        return {"video": decode_clip(_read(params.source_video, "clip", blobs, allow_files))}
    return end
