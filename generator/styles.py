"""Server styles on the worker: each style's LoRA is loaded once as a named adapter (unfused, on top of
any LoRA fused at start) and the most recent ``VIDEOBOT_STYLE_CACHE`` stay loaded.

Before each run ``StyleCache.apply`` makes exactly the job's style active at its scale
(``set_adapters``), or, for a job without one, turns every style adapter off (``disable_lora``), so
no job's style leaks into the next. A style that cannot be read or does not fit the model fails the
job with a member-facing reason (``InvalidParameters``: failed, refunded) and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from videobot.errors import InvalidParameters
from videobot.guilds import InvalidConfig
from videobot.i18n import N_, msg
from videobot.presets import GenerationParams, LoraSpec
from videobot.styles import parse_source

log = logging.getLogger(__name__)

#: Why a style failed a job (stored in English, shown in the server's language by the bot).
STYLE_UNREADABLE = N_(
    "The style `{style}` could not be loaded: {why}. Your credit was refunded; a moderator can check "
    "its source with `/videoconfig style list`."
)
STYLE_DOES_NOT_FIT = N_(
    "The style `{style}` does not fit this server's model `{model}`: it was made for another model. "
    "Your credit was refunded; a moderator can replace it (`/videoconfig style remove`, then `add`)."
)
NOT_ON_HUB = N_("its file is not on the Hugging Face Hub, or this worker cannot download it")
NOT_A_LORA = N_("its file is not a LoRA this worker can read")


def adapter_name(source: str) -> str:
    """The adapter's name for a style source (peft keys cannot hold ``.`` or ``/``)."""
    return "style_" + hashlib.sha256(source.encode()).hexdigest()[:16]


class StyleCache:
    """The style adapters loaded into one pipeline, least recently used first."""

    def __init__(self, pipe: Any, model: str, size: int = 3, *, cache_dir: Path | str | None = None) -> None:
        """``cache_dir``: the Hugging Face cache to download into (None: the default, ``HF_HUB_CACHE``)."""
        self.pipe = pipe
        self.model = model
        self.size = max(1, size)
        self.cache_dir = cache_dir
        self._loaded: OrderedDict[str, str] = OrderedDict()  # source -> adapter name
        self._lock = threading.Lock()
        self._off = True  # no style adapter is active

    def loaded(self) -> tuple[str, ...]:
        """The sources of the styles loaded now (most recent last): what the worker prefers to claim."""
        with self._lock:
            return tuple(self._loaded)

    def apply(self, params: GenerationParams) -> None:
        """Make ``params``' style (or none) the one the next run uses; loads it if needed."""
        source = params.style_source
        if source is None:
            if self._loaded and not self._off:
                self.pipe.disable_lora()
            self._off = True
            return
        name = self._ensure(params.style or source, source)
        self.pipe.enable_lora()
        self.pipe.set_adapters([name], adapter_weights=[float(params.style_scale)])
        self._off = False
        with self._lock:
            self._loaded.move_to_end(source)

    def _ensure(self, style: str, source: str) -> str:
        with self._lock:
            name = self._loaded.get(source)
        if name is not None:
            return name
        try:
            repo_id, weight_name = parse_source(source)
        except InvalidConfig:
            raise InvalidParameters(msg(STYLE_UNREADABLE, style=style, why=msg(NOT_ON_HUB))) from None
        while len(self._loaded) >= self.size:
            with self._lock:
                old_source, old = self._loaded.popitem(last=False)
            self._delete(old)
            log.info("style %s unloaded (cache of %d)", old_source, self.size)
        name = adapter_name(source)
        hub: dict[str, Any] = {"cache_dir": str(self.cache_dir)} if self.cache_dir is not None else {}
        from generator.pipeline import _lora_layer_keys, _lora_layers, _short

        try:
            expected = _lora_layer_keys(self.pipe, LoraSpec(repo_id, weight_name), **hub)
        except Exception as exc:
            log.warning("style %s (%s) could not be read: %s", style, source, _short(exc))
            raise InvalidParameters(msg(STYLE_UNREADABLE, style=style, why=msg(_why(exc)))) from None
        try:
            self.pipe.load_lora_weights(repo_id, adapter_name=name, weight_name=weight_name, **hub)
            placed = _lora_layers(self.pipe, name)
        except Exception as exc:
            log.warning("style %s (%s) does not fit %s: %s", style, source, self.model, _short(exc))
            placed = -1
        if placed <= 0 or placed < expected:
            self._delete(name)
            log.warning(
                "style %s (%s): %d of %d layers fit %s", style, source, max(placed, 0), expected, self.model
            )
            raise InvalidParameters(msg(STYLE_DOES_NOT_FIT, style=style, model=self.model))
        with self._lock:
            self._loaded[source] = name
        log.info("style %s (%s) loaded: %d layers", style, source, placed)
        return name

    def _delete(self, name: str) -> None:
        """Remove an adapter's layers (a half-loaded one too); never fails the job for it."""
        try:
            if any(name in names for names in self.pipe.get_list_adapters().values()):
                self.pipe.delete_adapters([name])
        except Exception:
            log.warning("could not remove the adapter %s", name, exc_info=True)


def _why(exc: BaseException) -> str:
    """Which reason a loading error gives the member."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    hub = (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, FileNotFoundError)
    if any(isinstance(e, hub) for e in chain) or any("offline" in str(e).lower() for e in chain):
        return NOT_ON_HUB
    return NOT_A_LORA
