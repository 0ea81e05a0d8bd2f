"""From a request to a job (bot and worker alike): which model it is queued under, its parameters, its cost. No Discord here."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from typing import Any

from videobot.errors import InvalidParameters
from videobot.i18n import msg
from videobot.images import PreparedImage, nearest_aspect
from videobot.presets import (
    ASPECT_RATIOS,
    DEFAULT_GPU_PRESET,
    MAX_SEED,
    MAX_VIDEOS,
    PRESETS,
    Preset,
    check_keyframes,
    clean_prompt,
    cost_weight,
    plan,
    resolve_preset,
)
from videobot.presets import offered_ratios as presets_offered_ratios
from videobot.presets import offered_verbs as presets_offered_verbs
from videobot.presets import offers_styles as presets_offers_styles
from videobot.settings import Settings

AUTO = "auto"
#: Where a job's first-frame image is: stored with the job (``job_inputs`` kind ``image``), which the
#: worker reads as ``db:image`` (``generator.inputs.db_ref("image")``).
IMAGE_INPUT = "image"
IMAGE_REF = "db:image"
#: Where a job's last-frame picture is (``/video end_image:``): ``job_inputs`` kind ``end_image``.
END_IMAGE_INPUT = "end_image"
END_IMAGE_REF = "db:end_image"
#: The prompt of an image→video job whose member described no motion ("animate naturally").
NATURAL_MOTION_PROMPT = "The picture comes to life with natural, gentle motion; the camera stays steady."
#: Discord caps one message request at 25 MiB in all; the files of one message share it.
MESSAGE_UPLOAD_LIMIT = 25 * 1024 * 1024
#: Kept free in that request for the JSON payload and the multipart framing.
MESSAGE_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class QueueTarget:
    """The model name jobs are queued under, and its preset when the bot can know it."""

    name: str
    #: None when only the worker can decide (``auto`` picks by GPU; a folder that exists on the worker
    #: machine only): the job then carries the bare request and the worker plans it.
    preset: Preset | None


def queue_target(settings: Settings) -> QueueTarget:
    """The one place that decides the model name a job is queued under.

    A preset name, repo id or folder resolves to its preset name (what workers with that
    ``VIDEOBOT_MODEL`` claim). ``auto`` stays ``auto``: the bot cannot know the worker's GPU, and
    workers configured with ``auto`` claim ``auto`` jobs.
    """
    model = (settings.model or AUTO).strip()
    if model == AUTO:
        return QueueTarget(AUTO, None)
    try:
        preset = resolve_preset(model)
    except InvalidParameters:
        return QueueTarget(model, None)
    return QueueTarget(preset.name, preset)


def offered_models(settings: Settings) -> list[str]:
    """Models a member may pick: for now the single model the owner configured."""
    target = queue_target(settings)
    return list(dict.fromkeys([target.name, (settings.model or AUTO).strip()]))


def check_model(settings: Settings, requested: str | None) -> QueueTarget:
    """The target for a member's ``model`` option; anything not configured is refused politely."""
    target = queue_target(settings)
    if requested is None or not requested.strip():
        return target
    if requested.strip() in offered_models(settings):
        return target
    raise InvalidParameters(
        msg(
            "The model `{model}` is not available here. "
            "This server's videobot runs `{running}`; leave the model option empty to use it.",
            model=requested.strip()[:100].replace("`", ""),
            running=target.name,
        )
    )


def offered_verbs(settings: Settings) -> frozenset[str]:
    """What members may ask of the configured model: ``text``, ``image``, ``extend``, ``audio``."""
    return presets_offered_verbs((settings.model or AUTO).strip())


def offered_ratios(settings: Settings) -> tuple[str, ...]:
    """The aspect ratios members may pick: those the configured model has a trained size for."""
    return presets_offered_ratios((settings.model or AUTO).strip())


def shown_model(settings: Settings) -> str:
    """The configured model's name as a refusal shows it between backticks."""
    return queue_target(settings).name.replace("`", "'")[:100]


def check_audio(settings: Settings, audio: bool | None) -> None:
    """Sound asked of a model that makes silent videos is refused (rather than silently dropped)."""
    if audio and "audio" not in offered_verbs(settings):
        raise InvalidParameters(
            msg("This server's model makes videos without sound. Leave the audio option empty (or off).")
        )


def check_image(settings: Settings) -> None:
    """A picture given to a model that cannot start from one is refused (before it is even downloaded)."""
    if "image" not in offered_verbs(settings):
        name = shown_model(settings)
        raise InvalidParameters(
            msg(
                "This server's model (`{model}`) cannot start a video from a picture. "
                "Leave the image out and describe the scene in the `/video` prompt instead.",
                model=name,
            )
        )


def offers_styles(settings: Settings) -> bool:
    """Whether members may pick a server style: the configured model loads LoRAs as adapters."""
    return presets_offers_styles((settings.model or AUTO).strip())


def check_style(settings: Settings, style: str | None) -> None:
    """A style asked of a model that cannot load one is refused (rather than silently dropped)."""
    if style and style.strip() and not offers_styles(settings):
        name = shown_model(settings)
        raise InvalidParameters(
            msg(
                "This server's model (`{model}`) cannot use styles. Leave the style option empty.",
                model=name,
            )
        )


def enhance_offered(settings: Settings) -> bool:
    """Whether members may ask for prompt enhancement: ``VIDEOBOT_ENHANCE_MODEL`` is not off (the bot and
    the workers read the same setting; the worker loads the model on the first job that asks)."""
    return (settings.enhance_model or "").strip().lower() not in ("", "off")


def check_enhance(settings: Settings, enhance: bool | None) -> None:
    """``enhance:true`` without an enhancer is refused (rather than silently ignored)."""
    if enhance and not enhance_offered(settings):
        raise InvalidParameters(
            msg(
                "Prompt enhancement is not available on this server's videobot. "
                "Leave the enhance option empty (or off) and describe the video in detail yourself."
            )
        )


def check_end(settings: Settings, *, end_image: bool, loop: bool | None) -> None:
    """An end picture or a loop asked of a model that cannot condition at the last frame is refused
    (before anything is downloaded), and so is both at once; the reason names the model and what it offers."""
    name = shown_model(settings)
    check_keyframes(name, offered_verbs(settings), end_image=end_image, loop=bool(loop))


def with_server_enhance(settings: Settings, params: dict[str, Any], server_default: bool) -> dict[str, Any]:
    """A request that did not say (``enhance`` None or absent) takes the server's default
    (``/videoconfig enhance``), which counts only while an enhancer is configured."""
    if params.get("enhance") is not None:
        return params
    return params | {"enhance": bool(server_default and enhance_offered(settings))}


def build_params(
    target: QueueTarget,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    seed: int | None = None,
    duration: float | None = None,
    aspect_ratio: str | None = None,
    audio: bool | None = None,
    image: PreparedImage | None = None,
    num_videos: int = 1,
    end_image: PreparedImage | None = None,
    loop: bool | None = None,
    enhance: bool | None = None,
) -> dict[str, Any]:
    """Validate the request and return the job's parameters (JSON).

    ``enhance``: rewrite the prompt with the worker's language model; None: the server's default,
    decided at submit (``with_server_enhance``).

    ``num_videos`` (variations, 1 to ``MAX_VIDEOS``) videos with seeds ``seed``, ``seed + 1``, …

    With a known preset: the full ``GenerationParams`` (diffusers names). Without one: the cleaned
    bare request (the seed chosen now, so a rerun can change it); the worker plans it for its preset.

    ``image`` (from ``videobot.images.prepare``) makes it an image→video job: the picture is the first
    frame (stored with the job as ``IMAGE_INPUT``, referenced as ``IMAGE_REF``), the prompt describes
    the motion (empty: ``NATURAL_MOTION_PROMPT``), and without an ``aspect_ratio`` the offered ratio
    nearest to the picture's is used (the worker then crops the picture's centre to the exact size).

    ``end_image`` (stored as ``END_IMAGE_INPUT``, referenced as ``END_IMAGE_REF``) is the picture the
    video ends on (with ``image``: it goes from one to the other; the ratio follows the first picture,
    else this one); ``loop`` ends the video on its first frame. Only on models with the ``keyframes`` /
    ``loop`` capability (``presets.check_keyframes``).
    """
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InvalidParameters(
            msg(
                "The seed must be a whole number from 0 to {max}; leave it empty for a random one.",
                max=MAX_SEED,
            )
        )
    if image is not None:
        if not (prompt or "").strip():
            prompt = NATURAL_MOTION_PROMPT
    picture = image or end_image
    if picture is not None and aspect_ratio is None:
        ratios = tuple(target.preset.sizes) if target.preset is not None else ASPECT_RATIOS
        aspect_ratio = nearest_aspect(picture.width, picture.height, ratios)
    if target.preset is not None:
        planned = plan(
            target.preset,
            prompt,
            negative_prompt=negative_prompt or "",
            seed=seed,
            duration_s=duration,
            aspect_ratio=aspect_ratio,
            audio=audio,
            verb="image" if image is not None else None,
            image=IMAGE_REF if image is not None else None,
            num_videos=num_videos,
            end_image=END_IMAGE_REF if end_image is not None else None,
            loop=bool(loop),
        ).to_dict()
        return planned | {"enhance": enhance}
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise InvalidParameters(
            msg(
                "Unknown aspect ratio `{ratio}`. Choose one of: {ratios}.",
                ratio=aspect_ratio,
                ratios=", ".join(ASPECT_RATIOS),
            )
        )
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise InvalidParameters(msg("The duration must be a positive number of seconds."))
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or not 1 <= num_videos <= MAX_VIDEOS:
        raise InvalidParameters(msg("The number of variations must be from 1 to {max}.", max=MAX_VIDEOS))
    return {
        "prompt": clean_prompt(prompt),
        "negative_prompt": clean_prompt(negative_prompt or "", what="negative prompt", allow_empty=True),
        "seed": secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
        "duration_s": duration,
        "aspect_ratio": aspect_ratio,
        "audio": audio,
        **({"verb": "image", "image": IMAGE_REF} if image is not None else {}),
        "num_videos": num_videos,
        **({"end_image": END_IMAGE_REF} if end_image is not None else {}),
        **({"loop": True} if loop else {}),
        "enhance": enhance,
    }


#: ``Job.kind``: how a job came to be (its source is ``Job.parent_job_id``).
KINDS = ("command", "rerun", "remix", "extend", "animate", "hd")
#: The stored input an extension continues (``job_inputs`` kind "video").
SOURCE_VIDEO_REF = "db:video"


def _new_seed(old: Any) -> int:
    seed = secrets.randbelow(MAX_SEED + 1)
    while seed == old:
        seed = secrets.randbelow(MAX_SEED + 1)
    return seed


def rerun_params(params: dict[str, Any]) -> dict[str, Any]:
    """The same request with a new random seed."""
    new = dict(params)
    new["seed"] = _new_seed(new.get("seed"))
    return new


def remix_params(params: dict[str, Any], prompt: str, negative_prompt: str) -> dict[str, Any]:
    """The same options (size, length, sound, input image) with the edited text and a new seed."""
    new = rerun_params(params)
    new["prompt"] = clean_prompt(prompt)
    new.pop("enhanced_prompt", None)  # new words: the language model writes them again (an HD's source's)
    new["negative_prompt"] = clean_prompt(negative_prompt or "", what="negative prompt", allow_empty=True)
    return new


def extend_params(target: QueueTarget, params: dict[str, Any], prompt: str) -> dict[str, Any]:
    """An extension of the clip made with ``params``: the same size and options, the edited prompt, a
    new seed, verb ``extend`` reading the source clip from ``job_inputs`` ("video")."""
    prompt = clean_prompt(prompt)
    if target.preset is None or "num_frames" not in params:
        # A bare request (``auto``): the worker plans it for its preset and sizes the extension itself.
        return dict(params) | {
            "prompt": prompt,
            "seed": _new_seed(params.get("seed")),
            "verb": "extend",
            "source_video": SOURCE_VIDEO_REF,
            "image": None,
            "num_videos": 1,
            "end_image": None,  # an extension continues the clip: it neither ends on a picture nor loops
            "loop": False,
            "enhanced_prompt": None,  # its own words are enhanced anew
        }
    planned = plan(
        target.preset,
        prompt,
        negative_prompt=str(params.get("negative_prompt") or ""),
        seed=_new_seed(params.get("seed")),
        verb="extend",
        source_video=SOURCE_VIDEO_REF,
        audio=bool(params.get("audio")),
    ).to_dict()
    # The clip keeps its own size (whatever aspect ratio it was made in).
    planned["width"], planned["height"] = int(params["width"]), int(params["height"])
    planned["enhance"] = bool(params.get("enhance"))
    return planned | _style_of(params)


def _style_of(params: dict[str, Any]) -> dict[str, Any]:
    """A job's server style (``videobot.styles.JOB_KEYS``), kept by what is made from its video."""
    from videobot.styles import JOB_KEYS

    return {k: params[k] for k in JOB_KEYS if k in params}


def hd_params(params: dict[str, Any], enhanced_prompt: str | None = None) -> dict[str, Any]:
    """The HD version of the video made with ``params``: the same request, seed and inputs at twice the
    width and height (``GenerationParams.hd``); of a job with variations, its first video.
    ``enhanced_prompt``: the source's (``Job.enhanced_prompt``): an enhanced video's HD version is made
    from the very words its source was (the language model is not asked again); one whose enhancement
    fell back to the member's prompt stays with that prompt."""
    new = dict(params)
    new["width"], new["height"] = int(params["width"]) * 2, int(params["height"]) * 2
    new["hd"] = True
    new["num_videos"] = 1
    if params.get("enhance"):
        if enhanced_prompt:
            new["enhanced_prompt"] = enhanced_prompt
        else:
            new["enhance"] = False
    return new


def hd_base(params: dict[str, Any]) -> dict[str, Any]:
    """The video an HD job makes at twice the size: its source's single video."""
    if not params.get("hd") or "width" not in params:
        return params
    return dict(params) | {
        "width": int(params["width"]) // 2,
        "height": int(params["height"]) // 2,
        "hd": False,
    }


def max_extensions(settings: Settings) -> int:
    """How many times one clip may be extended: ``VIDEOBOT_MAX_EXTENSIONS``, else the model's preset
    (``auto``: the smaller of the presets it may be)."""
    if settings.max_extensions is not None:
        return settings.max_extensions
    target = queue_target(settings)
    if target.preset is not None:
        return target.preset.max_extensions
    return min(PRESETS[DEFAULT_GPU_PRESET].max_extensions, PRESETS["tiny"].max_extensions)


def extension_number(lineage: list[Any]) -> int:
    """How many extensions a clip is made of: its lineage (nearest first) counted while it is an
    extension (by its verb, so a rerun or remix of an extension counts too)."""
    n = 0
    for job in lineage:
        if (job.params or {}).get("verb") != "extend":
            break
        n += 1
    return n


def job_cost(settings: Settings, target: QueueTarget, params: dict[str, Any]) -> int:
    """Per video: 1 credit, or with ``VIDEOBOT_COST_MODE=weighted`` the work relative to the default GPU
    preset (≥ 1); times the number of videos (``num_videos``, variations). An HD video costs
    ``VIDEOBOT_HD_COST``, else what one video of its source costs."""
    from videobot.jobs.records import wanted_videos

    count = wanted_videos(params)
    if params.get("hd"):
        # Like one video of its source (the HD button, or a rerun or remix of an HD video), unless the
        # owner set VIDEOBOT_HD_COST.
        if settings.hd_cost is not None:
            return count * settings.hd_cost
        params = hd_base(params) | {"num_videos": 1}
    if settings.cost_mode != "weighted" or "num_frames" not in params:
        return count
    from videobot.presets import GenerationParams

    one = replace(GenerationParams.from_dict(params), num_videos=1)
    return count * max(1, math.ceil(cost_weight(one)))


def file_budget(upload_limit_bytes: int, count: int) -> int:
    """Bytes each of ``count`` videos posted in ONE message may take: the per-file upload limit, and
    together at most Discord's per-request limit."""
    share = (MESSAGE_UPLOAD_LIMIT - MESSAGE_OVERHEAD) // max(count, 1)
    return min(upload_limit_bytes, share)
