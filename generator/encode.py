"""Encode frames (and a sound track) to an H.264 (+ AAC) mp4 that plays inline in Discord and fits an upload budget."""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from videobot.errors import InvalidParameters
from videobot.i18n import msg

log = logging.getLogger(__name__)

_CONTAINER_OVERHEAD = 64 * 1024  # bytes kept free for the moov atom and friends
_MAX_RATE = 20_000_000  # above ~20 Mb/s short clips climb to H.264 level 5+, which some phones refuse
_MIN_BPP = 0.05  # below this many bits per pixel per frame, a smaller picture looks better
_MIN_SIDE = 64
_MAX_ATTEMPTS = 8
_BT601 = 6  # AVCOL_PRI_SMPTE170M / AVCOL_TRC_SMPTE170M / AVCOL_SPC_SMPTE170M
#: AAC bit rates tried for a sound track, best first: the first one that takes at most an eighth of the
#: budget's bit rate is used (128 kb/s is transparent for generated speech and music at 24-48 kHz).
AUDIO_BITRATES = (128_000, 96_000, 64_000, 48_000, 32_000)
_AUDIO_SHARE = 1 / 8
_AAC_FRAME = 1024  # samples per AAC frame
_NTSC = (24, 30, 48, 60, 120)  # rates players expect as n*1000/1001


class EncodeError(InvalidParameters):
    """The video cannot be made to fit the size limit (retrying will not help)."""

    code = "encode_failed"


class StorageError(Exception):
    """Writing the temporary video file failed (disk full, I/O error): worth retrying later."""


@dataclass(frozen=True)
class EncodeResult:
    """An encoded mp4 plus what a delivery message needs to describe it."""

    data: bytes
    width: int
    height: int
    num_frames: int
    fps: float  # frames per second as a number (``frame_rate`` is exact)
    duration_s: float
    size_bytes: int
    attempts: int
    downscaled: bool
    bitrate_capped: bool
    notes: str
    poster: bytes  # JPEG of the middle frame, for embeds
    frame_rate: Fraction = Fraction(0)  # exact, e.g. 24000/1001
    has_audio: bool = False
    audio_bitrate: int | None = None  # AAC bits per second, when there is a sound track


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (what diffusers returns) to uint8, rounding; works in place on a float32 copy."""
    video = np.array(frames, dtype=np.float32)  # one copy, then in-place ops: ~2x faster than chained numpy
    np.multiply(video, 255.0, out=video)
    video += 0.5
    np.clip(video, 0.0, 255.0, out=video)
    return video.astype(np.uint8)


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


def exact_rate(fps: float | Fraction) -> Fraction:
    """The exact frame rate: 23.976 (or 23.98) is 24000/1001, 25 stays 25, 12.5 is 25/2."""
    if isinstance(fps, Fraction):
        return fps
    for n in _NTSC:
        if abs(fps - n * 1000 / 1001) < 0.006:
            return Fraction(n * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


@dataclass(frozen=True)
class _Audio:
    """A sound track ready to encode: float32 planar samples [channels, samples] in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def layout(self) -> str:
        return "mono" if self.samples.shape[0] == 1 else "stereo"


def _prepare_audio(audio: Any, sample_rate: int | None, num_samples: int) -> _Audio:
    """Waveform [channels, samples] or [samples] (numpy or torch, any float dtype) to a track of exactly
    ``num_samples`` samples: trimmed, or padded with silence, to the video's duration."""
    if sample_rate is None or not 8000 <= int(sample_rate) <= 96000:
        raise ValueError(f"audio needs a sample rate between 8000 and 96000 Hz, got {sample_rate}")
    if hasattr(audio, "detach"):  # a torch tensor (maybe bfloat16, maybe on the GPU)
        audio = audio.detach().float().cpu().numpy()
    wave = np.asarray(audio, dtype=np.float32)
    while wave.ndim > 2 and wave.shape[0] == 1:  # a batch of one: [1, channels, samples]
        wave = wave[0]
    if wave.ndim == 1:
        wave = wave[None, :]
    if wave.ndim != 2 or not 1 <= wave.shape[0] <= 2 or wave.shape[1] == 0:
        raise ValueError(f"expected audio of shape (channels<=2, samples) or (samples,), got {wave.shape}")
    out = np.zeros((wave.shape[0], num_samples), np.float32)
    n = min(num_samples, wave.shape[1])
    np.clip(np.nan_to_num(wave[:, :n]), -1.0, 1.0, out=out[:, :n])
    return _Audio(np.ascontiguousarray(out), int(sample_rate))


def _encode_once(
    frames: np.ndarray,
    rate: Fraction,
    width: int,
    height: int,
    *,
    crf: int,
    preset: str,
    maxrate: int | None,
    tmp_dir: Path | None,
    audio: _Audio | None = None,
    audio_bitrate: int = AUDIO_BITRATES[0],
) -> tuple[bytes, int]:
    """One libx264 (+ AAC) encode into a temp file (the faststart pass needs a real file); the file is always
    removed. Returns the mp4 and how many of its bytes are sound."""
    import av  # here, not at the top: the generator runs (bench/gpu_check.py) where PyAV is not installed

    name = None
    audio_bytes = 0
    try:
        if tmp_dir is not None:
            Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="videobot-", suffix=".mp4", dir=tmp_dir)
        os.close(fd)
        options = {"crf": str(crf), "preset": preset}
        if maxrate is not None:
            options |= {"maxrate": str(maxrate), "bufsize": str(maxrate // 2)}
        with av.open(name, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            cc = stream.codec_context
            cc.time_base = 1 / rate  # one tick per frame: 24000/1001 stays exact
            # swscale's RGB->YUV default is BT.601 limited range: tag it so, or players shift colours.
            cc.color_primaries = cc.color_trc = cc.colorspace = _BT601
            cc.color_range = 1  # MPEG / limited
            stream.options = options
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=audio.sample_rate, layout=audio.layout)
                sound.bit_rate = audio_bitrate
            sent = 0  # audio samples handed to the encoder so far
            total = audio.samples.shape[1] if audio is not None else 0
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                frame.pts = i
                container.mux(stream.encode(frame))
                if sound is not None and audio is not None:
                    # Interleave: the sound up to the end of this frame, in whole AAC frames (all of it at the end).
                    last = i == len(frames) - 1
                    until = total if last else min(total, round((i + 1) / rate * audio.sample_rate))
                    while sent < until and (last or sent + _AAC_FRAME <= until):
                        n = min(_AAC_FRAME, until - sent)
                        chunk = av.AudioFrame.from_ndarray(
                            audio.samples[:, sent : sent + n], format="fltp", layout=audio.layout
                        )
                        chunk.sample_rate = audio.sample_rate
                        chunk.pts = sent
                        sent += n
                        packets = sound.encode(chunk)
                        audio_bytes += sum(p.size for p in packets)
                        container.mux(packets)
            container.mux(stream.encode(None))
            if sound is not None:
                packets = sound.encode(None)
                audio_bytes += sum(p.size for p in packets)
                container.mux(packets)
        return Path(name).read_bytes(), audio_bytes
    except OSError as exc:
        log.warning("writing the temporary video failed: %s", exc)
        raise StorageError("Could not write the video file on the generator (storage problem).") from exc
    finally:
        if name is not None:
            Path(name).unlink(missing_ok=True)


def _poster(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _audio_bitrate_for(total_rate: float, audio: _Audio) -> int:
    """The best AAC rate that takes at most an eighth of ``total_rate`` (mono gets at most 96 kb/s)."""
    rates = [r for r in AUDIO_BITRATES if audio.layout == "stereo" or r <= 96_000]
    return next((r for r in rates if r <= total_rate * _AUDIO_SHARE), rates[-1])


def encode_mp4(
    frames: np.ndarray,
    fps: float | Fraction,
    *,
    audio: Any = None,
    audio_sample_rate: int | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    crf: int = 20,
    preset: str = "veryfast",
    tmp_dir: Path | None = None,
) -> EncodeResult:
    """Encode uint8 frames (F, H, W, 3) to a faststart H.264 yuv420p mp4 of at most ``max_bytes``.

    ``fps`` is kept exact (23.976 is written as 24000/1001). ``audio``, a float waveform in [-1, 1] of shape
    (channels, samples) or (samples,) at ``audio_sample_rate``, is muxed as AAC in the same file, trimmed or
    padded with silence to the video's duration; its bit rate counts against ``max_bytes``.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected uint8 frames of shape (F, H, W, 3), got {frames.dtype} {frames.shape}")
    if not 1 <= fps <= 240:
        raise ValueError(f"fps must be between 1 and 240, got {fps}")
    rate = exact_rate(fps)
    num_frames, src_h, src_w = frames.shape[:3]
    # yuv420p needs even sizes: drop a trailing odd row/column.
    height, width = src_h // 2 * 2, src_w // 2 * 2
    if height < 2 or width < 2:
        raise ValueError(f"frames are too small to encode: {src_w}x{src_h}")
    frames = frames[:, :height, :width]
    duration = float(num_frames / rate)
    sound = None
    if audio is not None:
        sound = _prepare_audio(
            audio, audio_sample_rate, round(num_frames / rate * int(audio_sample_rate or 0))
        )
    result = dict(
        num_frames=num_frames, fps=float(rate), frame_rate=rate, duration_s=duration,
        poster=_poster(frames[num_frames // 2]), has_audio=sound is not None,
    )  # fmt: skip
    encode = dict(crf=crf, preset=preset, tmp_dir=tmp_dir, audio=sound)

    audio_bitrate = AUDIO_BITRATES[0] if sound is None else _audio_bitrate_for(_MAX_RATE, sound)
    data, audio_bytes = _encode_once(
        frames, rate, width, height, maxrate=None, audio_bitrate=audio_bitrate, **encode
    )
    attempts = 1
    if len(data) <= max_bytes:
        return EncodeResult(
            data=data, width=width, height=height, size_bytes=len(data), attempts=1, downscaled=False,
            bitrate_capped=False, notes="", audio_bitrate=audio_bitrate if sound else None, **result,
        )  # fmt: skip

    limit = f"{max_bytes / 1024 / 1024:.1f}"  # stored in English, shown as it is in every language
    too_big = EncodeError(
        msg(
            "This video cannot fit in the {limit} MiB upload limit, even at low quality. "
            "Try a shorter duration or a smaller aspect ratio.",
            limit=limit,
        )
    )
    budget = max_bytes - _CONTAINER_OVERHEAD - 8 * num_frames
    if budget <= 0:
        raise too_big
    total_rate = budget * 8 / (duration + 0.5)
    first_audio_rate = audio_bitrate
    if sound is not None:
        # The sound track's share comes off the top; what AAC really wrote at the first rate scales to the
        # new one (it is VBR-ish: measured, not assumed), with 5 % to spare.
        audio_bitrate = _audio_bitrate_for(total_rate, sound)
        budget -= int(audio_bytes * audio_bitrate / first_audio_rate * 1.05)
        if budget <= 0:
            raise too_big
    # Constant quality with a VBV cap: fills 83-97 % of the budget in one encode (see NOTES.md).
    maxrate = min(int(budget * 8 / (duration + 0.5)), _MAX_RATE)
    w, h = width, height
    while True:
        while maxrate / (w * h * float(rate)) < _MIN_BPP and min(w, h) * 0.75 >= _MIN_SIDE:
            w, h = _even(w * 0.75), _even(h * 0.75)
        if attempts >= _MAX_ATTEMPTS:
            raise too_big
        log.info(
            "re-encoding %dx%d at maxrate %d b/s%s to fit %d bytes (was %d)",
            w,
            h,
            maxrate,
            f" + {audio_bitrate} b/s sound" if sound else "",
            max_bytes,
            len(data),
        )
        data, _ = _encode_once(frames, rate, w, h, maxrate=maxrate, audio_bitrate=audio_bitrate, **encode)
        attempts += 1
        if len(data) <= max_bytes:
            break
        if min(w, h) * 0.75 < _MIN_SIDE:
            raise too_big
        maxrate = int(maxrate * 0.85)
        w, h = _even(w * 0.75), _even(h * 0.75)

    downscaled = (w, h) != (width, height)
    notes = f"Re-encoded at up to {maxrate / 1e6:.2f} Mb/s to fit {max_bytes / 1024 / 1024:.1f} MiB"
    if sound is not None and audio_bitrate != first_audio_rate:
        notes += f", sound at {audio_bitrate // 1000} kb/s"
    notes += f", downscaled from {width}x{height} to {w}x{h}." if downscaled else "."
    return EncodeResult(
        data=data, width=w, height=h, size_bytes=len(data), attempts=attempts, downscaled=downscaled,
        bitrate_capped=True, notes=notes, audio_bitrate=audio_bitrate if sound else None, **result,
    )  # fmt: skip


def _top_level_boxes(data: bytes) -> list[str]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:  # 0 = "to end of file"; anything else < 8 is corrupt
            break
        pos += size
    return boxes


def probe_mp4(data: bytes, *, decode: bool = False) -> dict[str, Any]:
    """Describe an mp4: box order (faststart), codec, pix_fmt, profile, size, fps, frames, and its sound track
    (``audio``: codec, sample rate, channels, duration; None without one); optionally the decoded frames and
    samples."""
    import av

    boxes = _top_level_boxes(data)
    info: dict[str, Any] = {
        "boxes": boxes,
        "faststart": bool(boxes) and boxes[0] == "ftyp" and "moov" in boxes and "mdat" in boxes
        and boxes.index("moov") < boxes.index("mdat"),
    }  # fmt: skip
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        info |= {
            "codec": cc.name,
            "pix_fmt": cc.pix_fmt,
            "profile": cc.profile,
            "width": cc.width,
            "height": cc.height,
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "frame_rate": stream.average_rate,
            "colorspace": cc.colorspace,
            "color_primaries": cc.color_primaries,
            "color_trc": cc.color_trc,
            "color_range": cc.color_range,
            "duration_s": float(container.duration / av.time_base) if container.duration else None,
            "video_duration_s": _stream_seconds(stream),
            "audio": None,
        }
        if container.streams.audio:
            sound = container.streams.audio[0]
            info["audio"] = {
                "codec": sound.codec_context.name,
                "sample_rate": sound.codec_context.sample_rate,
                "channels": sound.codec_context.channels,
                "bit_rate": sound.codec_context.bit_rate or None,
                "duration_s": _stream_seconds(sound),
            }
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)] if decode else None
    if decoded is not None:
        info["num_frames"] = len(decoded)
        info["frames"] = np.stack(decoded) if decoded else np.zeros((0, 0, 0, 3), np.uint8)
    else:
        with av.open(io.BytesIO(data), mode="r") as container:
            info["num_frames"] = sum(1 for _ in container.demux(container.streams.video[0]) if _.size)
    if decode and info["audio"] is not None:
        with av.open(io.BytesIO(data), mode="r") as container:
            chunks = [f.to_ndarray() for f in container.decode(container.streams.audio[0])]
        info["audio"]["samples"] = np.concatenate(chunks, axis=1) if chunks else np.zeros((0, 0), np.float32)
    return info


def _stream_seconds(stream: Any) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)
