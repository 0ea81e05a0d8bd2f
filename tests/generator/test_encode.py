import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.encode import EncodeError, encode_mp4, probe_mp4
from videobot.errors import InvalidParameters

REPO_ROOT = Path(__file__).resolve().parents[2]


def smooth_clip(frames: int, height: int, width: int) -> np.ndarray:
    """A colour gradient that moves: easy to compress, easy to compare after decoding."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        shift = i * 4
        out[i, ..., 0] = (x + shift) / (width + 4 * frames) * 200 + 30
        out[i, ..., 1] = y / height * 180 + 40
        out[i, ..., 2] = 120 + 60 * np.sin((x + y + shift) / 40)
    return out


def noise_clip(frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def test_plays_inline_h264_yuv420p_faststart_bt601(tmp_path):
    frames = smooth_clip(17, 96, 160)
    result = encode_mp4(frames, 16, tmp_dir=tmp_path / "tmp")  # created when missing
    info = probe_mp4(result.data, decode=True)
    assert info["boxes"][0] == "ftyp" and info["faststart"]
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert info["profile"] in ("High", "Main", "Constrained Baseline", "Baseline")
    assert (info["width"], info["height"], info["num_frames"], info["fps"]) == (160, 96, 17, 16.0)
    assert (info["colorspace"], info["color_primaries"], info["color_trc"], info["color_range"]) == (
        6,
        6,
        6,
        1,
    )
    # Colours survive: decoding with PyAV's (BT.601) conversion gives back what went in.
    error = np.abs(info["frames"].astype(int) - frames.astype(int)).mean()
    assert error < 3
    assert (result.width, result.height, result.num_frames, result.fps) == (160, 96, 17, 16)
    assert result.duration_s == pytest.approx(17 / 16)
    assert result.size_bytes == len(result.data)
    assert (result.attempts, result.downscaled, result.bitrate_capped) == (1, False, False)
    assert list((tmp_path / "tmp").iterdir()) == []  # the temp file is gone


def test_poster_is_the_middle_frame_as_jpeg():
    frames = smooth_clip(9, 64, 96)
    poster = Image.open(io.BytesIO(encode_mp4(frames, 8).poster))
    assert poster.format == "JPEG" and poster.size == (96, 64)
    assert np.abs(np.asarray(poster).astype(int) - frames[4].astype(int)).mean() < 4


def test_odd_sizes_become_even():
    result = encode_mp4(smooth_clip(5, 33, 47), 8)
    info = probe_mp4(result.data)
    assert (info["width"], info["height"], info["num_frames"]) == (46, 32, 5)
    assert (result.width, result.height) == (46, 32)


def test_noise_over_budget_is_reencoded_under_it():
    budget = 300_000
    result = encode_mp4(noise_clip(49, 480, 832), 16, max_bytes=budget)
    assert len(result.data) <= budget and result.size_bytes == len(result.data)
    assert result.attempts > 1 and result.bitrate_capped
    assert result.notes
    info = probe_mp4(result.data)
    assert info["faststart"] and info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"], info["num_frames"]) == (result.width, result.height, 49)


def test_a_tight_budget_downscales():
    budget = 150_000
    result = encode_mp4(noise_clip(49, 480, 832), 16, max_bytes=budget)
    assert len(result.data) <= budget
    assert result.downscaled and result.width < 832 and result.height < 480
    assert result.width % 2 == 0 and result.height % 2 == 0
    info = probe_mp4(result.data)
    assert (info["width"], info["height"], info["num_frames"]) == (result.width, result.height, 49)
    assert "downscaled" in result.notes


def test_impossible_budget_is_a_user_safe_error():
    with pytest.raises(EncodeError) as err:
        encode_mp4(noise_clip(17, 240, 320), 8, max_bytes=50_000)
    assert isinstance(err.value, InvalidParameters)
    assert "shorter duration" in str(err.value)


def test_rejects_frames_that_are_not_rgb_uint8():
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((4, 32, 32, 3), np.float32), 8)
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((0, 32, 32, 3), np.uint8), 8)


def test_a_failing_disk_removes_the_temp_file_and_raises_storage_error(tmp_path):
    # A real write failure: the file size limit makes write() fail with EFBIG mid-encode, like a full disk.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from generator.encode import StorageError, encode_mp4
        frames = np.random.default_rng(0).integers(0, 256, (9, 240, 320, 3), dtype=np.uint8)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
        try:
            encode_mp4(frames, 8, tmp_dir={str(tmp_path)!r})
        except StorageError as exc:
            assert isinstance(exc.__cause__, OSError), exc.__cause__
            print("storage error:", exc)
            sys.exit(0)
        sys.exit("no StorageError")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "storage error: Could not write the video file" in proc.stdout
    assert list(tmp_path.iterdir()) == []
