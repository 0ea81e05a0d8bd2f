"""Sound in the mp4: H.264 + AAC in one faststart file, exact frame rate, and the upload budget still met."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from generator.encode import encode_mp4, exact_rate, probe_mp4

SR = 24_000


def tone(seconds: float, freq: float = 440.0, sr: int = SR, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels) if channels > 1 else wave


def smooth_clip(frames: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack(
        [((x + 3 * i) % 256 + y * 0).astype(np.uint8)[..., None].repeat(3, -1) for i in range(frames)]
    )


def noise_clip(frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def dominant_hz(samples: np.ndarray, sr: int) -> float:
    mono = samples.mean(axis=0)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / sr)[int(np.argmax(spectrum))])


def test_tone_and_frames_make_one_faststart_mp4_with_h264_and_aac():
    fps = 24
    frames = smooth_clip(49, 96, 160)
    result = encode_mp4(frames, fps, audio=tone(49 / fps), audio_sample_rate=SR)
    assert result.has_audio and result.audio_bitrate == 128_000
    info = probe_mp4(result.data, decode=True)
    assert info["faststart"] and info["boxes"].index("moov") < info["boxes"].index("mdat")
    assert (info["codec"], info["pix_fmt"], info["num_frames"]) == ("h264", "yuv420p", 49)
    audio = info["audio"]
    assert (audio["codec"], audio["sample_rate"], audio["channels"]) == ("aac", SR, 2)
    # The sound lasts as long as the picture (within one frame), and so does the file.
    assert abs(audio["duration_s"] - info["video_duration_s"]) <= 1 / fps
    assert info["video_duration_s"] == pytest.approx(49 / fps)
    assert result.duration_s == pytest.approx(49 / fps)
    assert info["duration_s"] == pytest.approx(49 / fps, abs=1 / fps)
    # A real decode of the AAC track gives back the 440 Hz tone on both channels.
    samples = audio["samples"]
    assert samples.shape[0] == 2 and samples.shape[1] >= 0.9 * 49 / fps * SR
    assert dominant_hz(samples, SR) == pytest.approx(440, abs=5)
    assert np.sqrt((samples[:, SR // 2 : SR] ** 2).mean()) == pytest.approx(0.5 / np.sqrt(2), rel=0.2)


def test_23_976_fps_stays_24000_over_1001():
    frames = smooth_clip(25, 64, 96)
    result = encode_mp4(frames, 23.976, audio=tone(2.0, channels=1), audio_sample_rate=SR)
    assert result.frame_rate == Fraction(24000, 1001) and result.fps == pytest.approx(23.976, abs=1e-3)
    info = probe_mp4(result.data)
    assert info["frame_rate"] == Fraction(24000, 1001)
    assert info["video_duration_s"] == pytest.approx(25 * 1001 / 24000)
    assert info["audio"]["channels"] == 1
    # Exact fractions pass through unchanged; plain rates stay plain.
    assert exact_rate(Fraction(30000, 1001)) == Fraction(30000, 1001)
    assert exact_rate(25) == 25 and exact_rate(12.5) == Fraction(25, 2)


def test_audio_longer_or_shorter_than_the_video_is_trimmed_or_padded():
    frames = smooth_clip(16, 64, 64)
    for seconds in (5.0, 0.5):
        info = probe_mp4(encode_mp4(frames, 8, audio=tone(seconds), audio_sample_rate=SR).data, decode=True)
        assert abs(info["audio"]["duration_s"] - 2.0) <= 1 / 8, seconds
    # Padding is silence: the last half second of the short tone's track is (nearly) quiet.
    samples = info["audio"]["samples"]
    assert np.abs(samples[:, int(1.2 * SR) : int(1.8 * SR)]).max() < 0.02
    assert np.abs(samples[:, int(0.1 * SR) : int(0.4 * SR)]).max() > 0.3


def test_a_small_budget_is_met_with_the_sound_kept():
    budget = 300_000
    seconds = 49 / 16
    result = encode_mp4(
        noise_clip(49, 480, 832), 16, audio=tone(seconds), audio_sample_rate=SR, max_bytes=budget
    )
    assert len(result.data) <= budget and result.attempts > 1 and result.bitrate_capped
    # The sound's share came off the budget: a tight one gets a lower AAC rate, and the notes say so.
    assert result.audio_bitrate is not None and result.audio_bitrate < 128_000
    assert "sound at" in result.notes
    info = probe_mp4(result.data, decode=True)
    assert info["faststart"] and info["num_frames"] == 49
    assert (info["width"], info["height"]) == (result.width, result.height)
    assert info["audio"]["codec"] == "aac"
    assert abs(info["audio"]["duration_s"] - info["video_duration_s"]) <= 1 / 16
    assert dominant_hz(info["audio"]["samples"], SR) == pytest.approx(440, abs=5)


def test_a_run_output_with_a_soundtrack_reaches_the_mp4():
    """The worker's call: ``encode_mp4(out.frames, fps, **out.audio_kwargs(encode_mp4))``."""
    from generator.pipeline import RunOutput

    frames = smooth_clip(9, 64, 64)
    out = RunOutput(frames=frames, audio=tone(9 / 8), audio_sample_rate=SR)
    with_sound = encode_mp4(out.frames, 8, **out.audio_kwargs(encode_mp4))
    assert with_sound.has_audio and probe_mp4(with_sound.data)["audio"]["channels"] == 2
    silent = RunOutput(frames=frames)
    result = encode_mp4(silent.frames, 8, **silent.audio_kwargs(encode_mp4))
    assert not result.has_audio and probe_mp4(result.data)["audio"] is None


def test_a_batch_of_one_and_a_torch_waveform_are_accepted():
    import torch

    frames = smooth_clip(9, 64, 64)
    wave = torch.from_numpy(tone(9 / 8)[None]).to(torch.bfloat16)  # [1, 2, n] bfloat16, as LTX-2 returns it
    info = probe_mp4(encode_mp4(frames, 8, audio=wave, audio_sample_rate=SR).data, decode=True)
    assert info["audio"]["channels"] == 2
    assert dominant_hz(info["audio"]["samples"], SR) == pytest.approx(440, abs=5)


def test_bad_audio_is_refused_clearly():
    frames = smooth_clip(9, 64, 64)
    with pytest.raises(ValueError, match="sample rate"):
        encode_mp4(frames, 8, audio=tone(1.0))
    with pytest.raises(ValueError, match="channels"):
        encode_mp4(frames, 8, audio=np.zeros((6, 1000), np.float32), audio_sample_rate=SR)


_PAGE = """<!doctype html><video id="v" playsinline></video><script>
(async () => {
  const v = document.getElementById("v");
  let r;
  try {
    v.src = "clip.mp4";
    await new Promise((ok, bad) => { v.onloadedmetadata = ok; v.onerror = () => bad(v.error && v.error.message); });
    await v.play();
    await new Promise(ok => { v.onended = ok; setTimeout(ok, 15000); });
    r = {duration: v.duration, ended: v.ended, audio: v.webkitAudioDecodedByteCount,
         frames: v.getVideoPlaybackQuality().totalVideoFrames};
  } catch (e) { r = {error: String(e)}; }
  await fetch("/result?" + encodeURIComponent(JSON.stringify(r)));
})();
</script>"""


def test_plays_to_the_end_with_sound_in_headless_chromium(tmp_path):
    """What Discord's desktop client (Chromium) does with the file: plays picture and sound to the end."""
    import functools
    import http.server
    import json
    import os
    import shutil
    import signal
    import subprocess
    import threading
    import urllib.parse

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium here (apt-get install -y chromium to run this check)")
    n, fps = 73, 23.976
    (tmp_path / "clip.mp4").write_bytes(
        encode_mp4(smooth_clip(n, 96, 160), fps, audio=tone(n / fps), audio_sample_rate=SR).data
    )
    (tmp_path / "index.html").write_text(_PAGE)
    results: list[dict] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/result?"):
                results.append(json.loads(urllib.parse.unquote(self.path.split("?", 1)[1])))
                self.send_response(204)
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]
    proc = subprocess.Popen(
        [
            browser,
            *args,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"http://127.0.0.1:{server.server_port}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the renderer and GPU helpers go with it
    )
    try:
        for _ in range(600):
            if results or proc.poll() is not None:
                break
            threading.Event().wait(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        server.shutdown()
    assert results, "chromium reported nothing within 60 s"
    [r] = results
    assert "error" not in r, r
    assert r["ended"] and r["duration"] == pytest.approx(n / fps, abs=1 / fps)
    assert r["frames"] == n and r["audio"] > 0  # decoded every frame and some sound


def test_a_tight_budget_counts_the_sound_and_keeps_the_full_picture():
    """A 12 s clip with a busy sound track where the budget is tight: the sound's bytes come off the
    video's share, so the second encode fits at full size. Counting the picture alone overshoots by the
    sound and the third encode posts 312x180 instead of 416x240."""
    fps, seconds, budget = 8, 12, 2_000_000
    noise = np.random.default_rng(1).standard_normal((2, seconds * SR)).astype(np.float32) * 0.3
    result = encode_mp4(
        noise_clip(fps * seconds, 240, 416), fps, audio=noise, audio_sample_rate=SR, max_bytes=budget
    )
    assert len(result.data) <= budget
    assert (result.width, result.height, result.downscaled) == (416, 240, False)
    assert result.attempts == 2  # the first encode at full quality, then one fitted encode
    info = probe_mp4(result.data)
    assert (info["width"], info["height"], info["num_frames"]) == (416, 240, fps * seconds)
    assert info["audio"]["codec"] == "aac"
    assert info["audio"]["duration_s"] == pytest.approx(seconds, abs=1 / fps)
