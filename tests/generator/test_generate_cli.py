import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.encode import probe_mp4
from generator.generate_cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_generate_writes_a_playable_video(tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.mp4"
    argv = ["a cat surfing", "-o", str(out), "--model", "tiny", "--seed", "7", "--duration", "2",
            "--aspect-ratio", "9:16", "--data-dir", str(tiny_data_dir)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "seed 7" in printed
    info = probe_mp4(out.read_bytes())
    assert info["faststart"] and (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["width"], info["height"], info["num_frames"], info["fps"]) == (32, 64, 17, 8.0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]

    # Same seed, same video (to the eye: on a loaded CPU, MKL / oneDNN may split a sum differently
    # between threads, which moves the last bits of a float and then the encoder's choices; this
    # failed 2 in 8 full parallel runs as an exact comparison). Another seed: another video.
    again, other = tmp_path / "again.mp4", tmp_path / "other.mp4"
    assert main([*argv[:2], str(again), *argv[3:]]) == 0
    assert main([*argv[:2], str(other), *argv[3:6], "8", *argv[7:]]) == 0
    first, same, different = (probe_mp4(p.read_bytes(), decode=True)["frames"] for p in (out, again, other))
    assert psnr(first, same) >= 40, f"same seed, a different video: PSNR {psnr(first, same):.1f} dB"
    assert psnr(first, different) < 30, f"another seed, the same video: PSNR {psnr(first, different):.1f} dB"


def test_hd_writes_the_same_request_at_twice_the_size(tiny_data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "hd.mp4"
    argv = [
        "a cat surfing",
        "-o",
        str(out),
        "--model",
        "tiny",
        "--seed",
        "7",
        "--data-dir",
        str(tiny_data_dir),
    ]
    assert main([*argv, "--hd"]) == 0
    info = probe_mp4(out.read_bytes())
    assert (info["width"], info["height"], info["num_frames"]) == (128, 64, 9)  # tiny's 64x32, doubled
    assert main([*argv, "--hd", "--variations", "2"]) == 2
    assert "one video at twice" in capsys.readouterr().err
    assert main([*argv, "--hd", "--model", "tiny-wan"]) == 2
    assert "cannot make HD videos" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # refused before anything loads
        main([*argv, "--hd", "--loop"])
    assert refused.value.code == 2
    assert "not with --end-image or --loop" in capsys.readouterr().err


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 videos in dB (infinite when identical)."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--duration", "100"], "between 1.1 and 3.1 seconds"),
        (["--seed", "-1"], "seed"),
        (["--model", "no-such-model"], "Unknown model"),
    ],
)
def test_user_errors_are_one_clean_line(extra, message, tiny_data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.mp4"
    argv = ["a dog", "-o", str(out), "--model", "tiny", "--data-dir", str(tiny_data_dir), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_empty_prompt(tiny_data_dir: Path, tmp_path: Path, capsys):
    assert (
        main(["  ", "-o", str(tmp_path / "x.mp4"), "--model", "tiny", "--data-dir", str(tiny_data_dir)]) == 2
    )
    assert "prompt is empty" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU default")
def test_module_entry_point_defaults_to_tiny_without_gpu(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path
):
    out = tmp_path / "sub.mp4"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "generator.generate_cli", "a boat at sunset", "-o", str(out),
         "--data-dir", str(tiny_data_dir)],  # fmt: skip
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "tiny" in proc.stderr and "VIDEOBOT_MODEL" in proc.stderr
    )  # the warning says how to pick a real model
    assert "Traceback" not in proc.stderr
    assert "Wrote" in proc.stdout
    info = probe_mp4(out.read_bytes())
    assert (info["codec"], info["width"], info["height"], info["num_frames"]) == ("h264", 64, 32, 9)


def test_image_starts_the_video_in_the_pictures_ratio_and_hostile_files_are_refused(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys
):
    from PIL import Image

    from tests.core.test_images import bomb_png

    picture = tmp_path / "portrait.jpg"
    Image.new("RGB", (90, 160), (10, 200, 30)).save(picture, format="JPEG")
    out = tmp_path / "out.mp4"
    base = ["", "-o", str(out), "--model", "tiny", "--seed", "3", "--data-dir", str(tiny_data_dir)]
    assert main([*base, "--image", str(picture)]) == 0  # empty prompt: natural motion
    info = probe_mp4(out.read_bytes())
    assert (info["width"], info["height"]) == (32, 64)  # 9:16, the offered ratio nearest 90x160
    capsys.readouterr()

    for name, data, message in [
        ("bomb.png", bomb_png(), "pixels"),
        # Under the pixel cap, over the PNG decode budget: the bot's bounded decoder refuses it here too.
        ("big.png", bomb_png(6324, 6324), "I can read PNG pictures of up to 16.8 megapixels (4096×4096)"),
        ("notes.png", b"just some text, not a picture" * 20, "not a picture I can read"),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        target = tmp_path / f"{name}.mp4"
        assert main(["a cat", "-o", str(target), "--model", "tiny", "--data-dir", str(tiny_data_dir),
                     "--image", str(path)]) == 2  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
        assert not target.exists()


def test_enhance_prints_the_prompt_the_video_was_made_from(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys
):
    out = tmp_path / "out.mp4"
    argv = [
        "a cat surfing",
        "-o",
        str(out),
        "--model",
        "tiny",
        "--seed",
        "7",
        "--data-dir",
        str(tiny_data_dir),
    ]
    assert main([*argv, "--enhance", "--enhance-model", "tiny"]) == 0
    err = capsys.readouterr().err
    enhanced = next(line for line in err.splitlines() if line.startswith("Enhanced prompt: "))
    assert len(enhanced.split()) > 5 and out.exists()
    # A model that cannot be loaded: the video is still made, from the prompt as written, and it says so.
    assert main([*argv, "--enhance", "--enhance-model", str(tmp_path / "missing")]) == 0
    assert "Prompt enhancement failed, so your prompt was used as written." in capsys.readouterr().err
