"""What a job's pipeline run needs besides its JSON parameters: the first-frame image, the clip to extend.

``GenerationParams.image`` / ``source_video`` only name the input. Here they are file paths; the job queue
will hand over bytes later (an uploaded PNG, the parent job's mp4), which the same decoders take.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from videobot.errors import InvalidParameters
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
        raise InvalidParameters("The image could not be read: upload a PNG, JPEG or WebP picture.") from None


def decode_clip(data: bytes) -> np.ndarray:
    """mp4 bytes to uint8 frames (F, H, W, 3), or ``InvalidParameters``."""
    import av

    from generator.encode import probe_mp4

    try:
        frames = probe_mp4(data, decode=True)["frames"]
    except (av.FFmpegError, IndexError, ValueError, OSError):
        raise InvalidParameters("The clip to extend could not be read as an mp4 video.") from None
    if len(frames) < 2:
        raise InvalidParameters("The clip to extend has fewer than two frames.")
    return frames


def _read(ref: str, what: str) -> bytes:
    path = Path(ref)
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InvalidParameters(f"The {what} is larger than {MAX_INPUT_BYTES // 1024 // 1024} MB.")
        return path.read_bytes()
    except OSError:
        raise InvalidParameters(f"The {what} is no longer available; please send it again.") from None


def load_inputs(params: GenerationParams) -> dict[str, Any]:
    """Keyword arguments for ``VideoPipeline.run`` (``image=`` / ``video=``) for the job's verb; empty for text."""
    if params.verb == "image":
        if not params.image:
            raise InvalidParameters("A video from an image needs the image.")
        return {"image": decode_image(_read(params.image, "image"))}
    if params.verb == "extend":
        if not params.source_video:
            raise InvalidParameters("Extending a clip needs the clip.")
        return {"video": decode_clip(_read(params.source_video, "clip to extend"))}
    return {}
