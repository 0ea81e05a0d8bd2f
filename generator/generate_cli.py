"""`videobot generate`: make one video from the terminal, without Discord or a database."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videobot.presets import MAX_VIDEOS

if TYPE_CHECKING:
    from generator.encode import EncodeResult

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="videobot generate",
        description="Generate a video from a text prompt, a first image (--image) or a clip to extend (--extend), "
        "ending on a picture (--end-image) or where it starts (--loop); "
        "--variations N makes N takes with seeds SEED, SEED+1, ... (OUTPUT-1.mp4, OUTPUT-2.mp4, ...); --hd makes "
        "the same video at twice the width and height.",
    )
    p.add_argument("prompt", help="what the video should show")
    p.add_argument("-o", "--output", type=Path, default=Path("video.mp4"), help="mp4 file to write")
    p.add_argument("--model", default="auto", help="preset name, Hub repo id or local folder (default: auto)")
    p.add_argument("--seed", type=int, default=None, help="0..4294967295 (default: random)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: the model's default)")
    p.add_argument("--aspect-ratio", default=None, choices=["16:9", "9:16", "1:1"])
    p.add_argument("--negative-prompt", default="", help="what to avoid (default: the model's own)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--image",
        type=Path,
        default=None,
        help="start the video from this picture (PNG, JPEG or WebP; the prompt then describes the motion; "
        "without --aspect-ratio the ratio nearest the picture's is used, and the picture's centre is cropped to it)",
    )
    src.add_argument(
        "--extend",
        type=Path,
        default=None,
        help="continue this mp4 clip (the output holds the clip and its sequel)",
    )
    end = p.add_mutually_exclusive_group()
    end.add_argument(
        "--end-image",
        type=Path,
        default=None,
        help="end the video on this picture (PNG, JPEG or WebP); with --image it goes from one to the other "
        "(models with keyframes: LTX-Video 0.9.7/0.9.8 distilled, LTX-2.3 distilled, tiny-ltx, tiny-ltx2)",
    )
    end.add_argument(
        "--loop",
        action="store_true",
        help="end the video where it starts, so it plays seamlessly on repeat (models with loop, as "
        "--end-image; without --image a short first pass makes the picture it starts and ends on)",
    )
    p.add_argument(
        "--variations",
        type=int,
        default=1,
        metavar="N",
        help=f"make N videos (1-{MAX_VIDEOS}) with seeds SEED..SEED+N-1, written as OUTPUT-1.mp4 ... (default: 1)",
    )
    p.add_argument(
        "--hd",
        action="store_true",
        help="make it at twice the width and height, as the HD button does: the video at the model's size, "
        "its latents upsampled 2x by the model's latent upsampler and refined (LTX-Video 0.9.7/0.9.8 distilled, "
        "LTX-2.3 distilled, tiny, tiny-ltx, tiny-ltx2; one video, not with --extend)",
    )
    p.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024, help="largest file to write (each)")
    p.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="where the built-in tiny model is kept"
    )
    p.add_argument(
        "--safety-model",
        default="auto",
        help="image safety classifier that scores the picture and every video, as VIDEOBOT_SAFETY_MODEL: "
        "auto, a Hugging Face repo id, a local folder, tiny-safe, tiny-unsafe or off (default: auto)",
    )
    p.add_argument(
        "--enhance",
        action="store_true",
        help="let a small language model write the prompt out in detail first (as /video enhance:True); "
        "the enhanced prompt is printed",
    )
    p.add_argument(
        "--enhance-model",
        default="auto",
        help="the language model for --enhance, as VIDEOBOT_ENHANCE_MODEL: auto (Qwen/Qwen2.5-1.5B-Instruct; "
        "tiny beside the tiny video model), a Hugging Face repo id, a local folder or tiny (default: auto)",
    )
    return p


def _quiet_library_progress_bars() -> None:
    """Only our own bar: hide diffusers'/transformers' loading bars."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _picture(path: Path) -> Any:
    """A picture file checked and normalised as the bot does it (``videobot.images.prepare``)."""
    from videobot import images
    from videobot.errors import InvalidParameters
    from videobot.i18n import msg

    try:
        if path.stat().st_size > images.MAX_IMAGE_BYTES:
            raise InvalidParameters(
                msg(
                    "{path} is larger than {limit} MB; use a smaller picture.",
                    path=path,
                    limit=images.MAX_IMAGE_BYTES // 1024 // 1024,
                )
            )
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidParameters(
            msg("cannot read {path}: {reason}", path=path, reason=exc.strerror or exc)
        ) from None
    return images.prepare(data)


def _image_request(args: argparse.Namespace, model: str) -> tuple[Any, dict[str, Any]]:
    """``--image`` / ``--end-image`` / ``--loop``: the pictures checked and normalised as the bot does
    it, planned by ``planning.build_params``; returns the parameters and the pipeline's ``image=`` /
    ``end_image=`` keywords."""
    from videobot import images, planning
    from videobot.presets import GenerationParams, resolve_preset

    prepared = _picture(args.image) if args.image else None
    end = _picture(args.end_image) if args.end_image else None
    preset = resolve_preset(model)
    raw = planning.build_params(
        planning.QueueTarget(preset.name, preset),
        args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        duration=args.duration,
        aspect_ratio=args.aspect_ratio,
        image=prepared,
        num_videos=args.variations,
        end_image=end,
        loop=args.loop,
    )
    inputs = {"image": images.open_png(prepared.png)} if prepared is not None else {}
    if end is not None:
        inputs["end_image"] = images.open_png(end.png)
    return GenerationParams.from_dict(raw), inputs


def output_paths(output: Path, count: int) -> list[Path]:
    """``out.mp4`` for one video; ``out-1.mp4`` … ``out-N.mp4`` for N variations."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix or '.mp4'}") for i in range(1, count + 1)]


def _describe(path: Path, result: EncodeResult, seed: int) -> str:
    size = result.size_bytes
    size_text = f"{size / 1024 / 1024:.2f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KiB"
    sound = ", with sound" if result.has_audio else ""
    return (
        f"{path} ({size_text}, {result.num_frames} frames, "
        f"{result.width}x{result.height} @ {result.fps:g} fps, {result.duration_s:.1f} s{sound}), seed {seed}"
    )


def _enhanced(args: argparse.Namespace, pipeline: Any, params: Any) -> Any:
    """``params`` with the prompt the language model wrote (printed), or as they are with the reason."""
    import dataclasses

    from generator.enhance import enhance, load_enhancer

    enhancer = load_enhancer(args.enhance_model, data_dir=args.data_dir, pipeline=pipeline)
    result = enhance(enhancer, params.prompt, family=pipeline.preset.family, verb=params.verb, job_id=0)
    if result.prompt is None:
        print(str(result.note), file=sys.stderr)
        return params
    print(f"Enhanced prompt: {result.prompt}", file=sys.stderr)
    return dataclasses.replace(params, prompt=result.prompt)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the process exit code (2 for a user-facing error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.extend and (args.end_image or args.loop):
        parser.error("--extend continues a clip: it cannot be combined with --end-image or --loop")
    if args.hd and (args.end_image or args.loop):
        parser.error("--hd makes videos from text or a single picture: not with --end-image or --loop")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    from tqdm import tqdm

    from generator.encode import EncodeError, StorageError, encode_mp4
    from generator.inputs import load_inputs
    from generator.pipeline import (
        ModelLoadError,
        VideoPipeline,
        resolve_auto_model,
        run_variations,
        total_steps,
    )
    from generator.safety import SafetyLoadError, load_safety
    from videobot.errors import GenerationOOM, InvalidParameters, UnsafeInput
    from videobot.i18n import msg
    from videobot.presets import plan, resolve_preset, tiny_family
    from videobot.safety import DEFAULT_LEVEL, INPUT_LEVEL, UNSAFE_INPUT, flagged, threshold

    try:
        model = resolve_auto_model(args.model)
        if args.image or args.end_image or args.loop:
            params, inputs = _image_request(args, model)
        else:
            verb = "extend" if args.extend else "text"
            params = plan(
                resolve_preset(model),
                args.prompt,
                negative_prompt=args.negative_prompt,
                seed=args.seed,
                duration_s=args.duration,
                aspect_ratio=args.aspect_ratio,
                verb=verb,
                source_video=str(args.extend) if args.extend else None,
                num_videos=args.variations,
            )
            inputs = load_inputs(params, allow_files=True)
        if args.hd:
            from videobot.planning import hd_params
            from videobot.presets import GenerationParams

            if params.num_videos != 1:
                raise InvalidParameters(
                    msg("An HD video is one video at twice its source's width and height.")
                )
            params = GenerationParams.from_dict(hd_params(params.to_dict()))
        _quiet_library_progress_bars()
        # `auto` again (not the name it resolved to), so it also brings the memory options it picks.
        pipeline = VideoPipeline.load(args.model if args.model == "auto" else model, data_dir=args.data_dir)
        safety = load_safety(
            args.safety_model,
            data_dir=args.data_dir,
            device=pipeline.device,
            video_model_is_tiny=tiny_family(pipeline.preset) is not None,
        )
        if args.enhance:
            params = _enhanced(args, pipeline, params)
        for key in ("image", "end_image"):
            if safety is None or inputs.get(key) is None:
                continue
            verdict = safety.score_image(inputs[key])
            print(f"Picture safety score {verdict.score:.4f} ({safety.name})", file=sys.stderr)
            if flagged(verdict.score, INPUT_LEVEL):
                raise UnsafeInput(msg(UNSAFE_INPUT))
        steps = total_steps(pipeline.preset, params)
        with tqdm(total=steps, desc="Generating", unit="step", file=sys.stderr) as bar:

            def on_step(step: int, total: int) -> None:
                bar.total = total
                bar.update(step - bar.n)

            variations = run_variations(pipeline, params, on_step, **inputs)
        paths = output_paths(args.output, params.num_videos)
        written: list[tuple[Path, EncodeResult, int, Any]] = []
        start = len(inputs["video"]) if inputs.get("video") is not None else 0
        for v, path in zip(variations, paths, strict=True):
            if v.output is None:
                print(f"warning: {path} was not made (seed {v.seed}): {v.error}", file=sys.stderr)
                continue
            result = encode_mp4(
                v.output.frames, params.fps, max_bytes=args.max_bytes, **v.output.audio_kwargs(encode_mp4)
            )
            verdict = safety.score_video(v.output.frames, start=start) if safety is not None else None
            _write_atomic(path, result.data)
            written.append((path, result, v.seed, verdict))
    except (
        InvalidParameters,
        EncodeError,
        ModelLoadError,
        GenerationOOM,
        StorageError,
        SafetyLoadError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    limit = threshold(DEFAULT_LEVEL)
    for path, result, seed, verdict in written:
        print(f"Wrote {_describe(path, result, seed)} with {model}")
        if result.notes:
            print(result.notes)
        if verdict is None:
            print("safety check off")
        else:
            print(
                f"safety score {verdict.score:.4f} (frame {verdict.frame}, {verdict.frames_scored} frames scored "
                f"by {verdict.model}; {DEFAULT_LEVEL.value} flags above {limit})"
                + (": FLAGGED" if flagged(verdict.score, DEFAULT_LEVEL) else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
