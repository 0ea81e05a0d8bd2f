"""``videobot generate --end-image PICTURE`` and ``--loop`` on the tiny model: the file ends on the picture
(or where it starts), hostile end pictures and models that cannot are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.encode import probe_mp4
from generator.generate_cli import main
from videobot.images import fit


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_end_image_and_loop_from_the_command_line(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys
):  # type: ignore[no-untyped-def]
    from tests.core.test_images import bomb_png

    end = tmp_path / "end.png"
    Image.new("RGB", (160, 90), (20, 40, 230)).save(end)
    out = tmp_path / "out.mp4"
    base = ["a fox", "-o", str(out), "--model", "tiny", "--seed", "3", "--data-dir", str(tiny_data_dir),
            "--safety-model", "off"]  # fmt: skip
    assert main([*base, "--end-image", str(end)]) == 0
    frames = probe_mp4(out.read_bytes(), decode=True)["frames"]
    assert frames.shape == (9, 32, 64, 3)
    target = np.asarray(fit(Image.open(end).convert("RGB"), 64, 32))
    assert mean_diff(frames[-1], target) < 6 < mean_diff(frames[0], target)

    assert main([*base, "--loop"]) == 0
    frames = probe_mp4(out.read_bytes(), decode=True)["frames"]
    assert mean_diff(frames[0], frames[-1]) < 8
    capsys.readouterr()

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png())
    wan = ["a fox", "-o", str(tmp_path / "wan.mp4"), "--model", "tiny-wan", "--data-dir", str(tiny_data_dir)]
    for argv, message in [
        ([*base, "--end-image", str(bomb)], "pixels"),
        ([*wan, "--loop"], "The model `tiny-wan` cannot make looping videos; it offers: text."),
        ([*wan, "--end-image", str(end)], "The model `tiny-wan` cannot end a video on a given picture"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "wan.mp4").exists()
    with pytest.raises(SystemExit):  # argparse: --end-image and --loop together
        main([*base, "--end-image", str(end), "--loop"])
    with pytest.raises(SystemExit):
        main([*base, "--extend", str(out), "--loop"])
