"""Prompt enhancement on the worker: a small instruction-tuned language model rewrites a member's prompt
into the detailed kind the video model was trained on, before the video is rendered
(``VIDEOBOT_ENHANCE_MODEL``; asked for with ``/video enhance:`` or a server's ``/videoconfig enhance``).

- **Which model.** ``auto`` is ``DEFAULT_ENHANCE_MODEL`` (Qwen2.5-1.5B-Instruct, Apache-2.0, ~3.1 GB in
  bf16), or the built-in ``tiny`` model beside a tiny video model (offline, for tests). Any causal LM
  with a chat template loads: a Hugging Face repo id (downloaded into the Hugging Face cache on first
  use) or a local folder.
- **When it loads.** On the first job that asks for it, never at start: a worker whose members never
  ask pays nothing. A model that fails to load is tried again ``RETRY_LOAD_SECONDS`` later at the
  earliest; meanwhile jobs that ask run with the member's prompt as written.
- **Memory.** The model waits in CPU memory. On a GPU it is moved there for the rewrite only and back
  to CPU right after (``torch.cuda.empty_cache()``), so it holds no GPU memory while the video renders
  (``placement`` says where its weights are now).
- **Deterministic.** Greedy decoding with a bounded ``MAX_NEW_TOKENS``: the same prompt gives the same
  rewrite, so a Rerun (which keeps ``enhance``) renders the same enhanced prompt with a new seed.
- **Instructions.** Each family's own published prompt-extension guide (``generator.enhance_guides``).
- **Output.** Labels ("Here is…", "Enhanced prompt:"), quotes, markdown and control characters are
  removed, whitespace joined into one paragraph and the text cut to ``MAX_PROMPT_CHARS`` at a sentence
  or word end. Nothing usable (fewer than ``MIN_WORDS`` words) is a failure: the job falls back to the
  member's prompt and the result says so (``ENHANCE_FAILED``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from generator.enhance_guides import instruction
from videobot.i18n import N_
from videobot.presets import MAX_PROMPT_CHARS, clean_prompt

log = logging.getLogger(__name__)

#: The default: small enough to sit beside the video model on a 24 GB card (README "Prompt enhancement").
DEFAULT_ENHANCE_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
TINY = "tiny"
#: Tokens the model may write: ~150 words of English fit in about 200.
MAX_NEW_TOKENS = 256
#: A rewrite with fewer words is not a prompt.
MIN_WORDS = 3
#: After a failed load, jobs use the member's prompt for this long before the load is tried again.
RETRY_LOAD_SECONDS = 300.0
#: Stored with the job (English; the bot shows it in the server's language).
ENHANCE_FAILED = N_("Prompt enhancement failed, so your prompt was used as written.")
ENHANCE_UNAVAILABLE = N_("This worker has no prompt enhancer, so your prompt was used as written.")
#: The rewrite used words the server blocks (``/videoconfig block-add``): the member's prompt is used.
ENHANCE_BLOCKED = N_("The enhanced prompt used words this server blocks, so your prompt was used as written.")

_TINY_MARKER = "videobot_tiny_lm.json"
_TINY_VERSION = 2
#: A minimal chat template for the tiny model (real models bring their own).
_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)
_LABEL = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly)[,!.]?\s*)?(?:here(?:'s| is| are)[^:\n]{0,80}:|"
    r"(?:enhanced|rewritten|revised|improved|expanded|final)?\s*prompt\s*:)\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»"


class EnhanceError(Exception):
    """The enhancer could not rewrite a prompt (load failure, generation error, unusable output)."""


@dataclass(frozen=True)
class Enhancement:
    """What became of one job's request: the rewritten prompt, or ``note`` saying why there is none."""

    prompt: str | None
    note: str | None = None
    seconds: float = 0.0


def resolve_enhance_model(setting: str, *, video_model_is_tiny: bool) -> str | None:
    """The model a worker uses for ``VIDEOBOT_ENHANCE_MODEL``: None for ``off`` or empty; ``auto`` is
    the default model, or ``tiny`` beside a built-in tiny video model (which must work offline)."""
    name = (setting or "").strip()
    if name.lower() in ("", "off"):
        return None
    if name.lower() == "auto":
        return TINY if video_model_is_tiny else DEFAULT_ENHANCE_MODEL
    return name


def clean_output(text: str) -> str:
    """The model's answer as a prompt: one paragraph without labels, quotes or markdown, at most
    ``MAX_PROMPT_CHARS`` (cut at a sentence end, else a word end). Raises ``EnhanceError`` when
    nothing usable is left."""
    text = text.replace("\r\n", "\n")
    # A model that "thinks" first (<think>…</think>) or explains after a blank line: the first block.
    text = re.sub(r"<think>.*?</think>", " ", text, flags=re.DOTALL)
    text = _LABEL.sub("", text.strip())
    text = re.sub(r"[*_#]{1,3}", "", text)
    text = " ".join(text.split())
    text = text.strip(_QUOTES + " ")
    text = _LABEL.sub("", text).strip(_QUOTES + " ")
    if len(text) > MAX_PROMPT_CHARS:
        cut = text[:MAX_PROMPT_CHARS]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        text = cut[: end + 1] if end >= MAX_PROMPT_CHARS // 2 else cut.rsplit(" ", 1)[0]
    text = clean_prompt(text, allow_empty=True)
    words = re.findall(r"\w+", text.lower())
    if len(words) < MIN_WORDS:
        raise EnhanceError(f"the model wrote no usable prompt ({text[:40]!r})")
    if len(words) >= 12 and len(set(words)) < len(words) * 0.25:
        raise EnhanceError(f"the model repeated itself ({text[:40]!r}…)")
    return text


def build_tiny_lm(folder: Path) -> Path:
    """A tiny random causal LM (transformers' ``LlamaForCausalLM``, a few thousand parameters) with the
    tiny video models' tokenizer and a chat template, saved to ``folder`` like a downloaded model
    (offline, under a second); an existing one is kept. (Llama, not Qwen2: transformers 5 rebuilds a
    ``qwen2`` model's tokenizer as byte-level BPE on load, which this Unigram tokenizer is not.)"""

    def complete() -> bool:
        try:
            marker = json.loads((folder / _TINY_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(marker, dict) and marker.get("version") == _TINY_VERSION

    if complete():
        return folder
    from generator.tiny import build_into

    return build_into(folder, _write_tiny_lm, complete)


def _write_tiny_lm(folder: Path) -> None:
    """Save the tiny LM and its tokenizer into the empty ``folder`` (the marker last)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from generator.tiny import _build_tokenizer

    tokenizer = _build_tokenizer()
    tokenizer.chat_template = _TINY_CHAT_TEMPLATE
    tokenizer.model_max_length = 4096  # the instructions alone are ~600 of its tokens
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    # Random weights loop on one letter: the tiny model may write whole words only (its vocabulary's),
    # each once, so its answer reads as words like a real model's.
    vocab = tokenizer.get_vocab()
    letters = [i for piece, i in vocab.items() if not piece.startswith("\u2581") or piece == "\u2581"]
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        no_repeat_ngram_size=1,
        suppress_tokens=sorted(i for i in letters if i != tokenizer.eos_token_id),
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / _TINY_MARKER).write_text(json.dumps({"version": _TINY_VERSION}), encoding="utf-8")


class PromptEnhancer:
    """One language model that rewrites prompts; loaded on first use, kept in CPU memory between uses."""

    def __init__(self, name: str, *, data_dir: Path, device: torch.device | str) -> None:
        """``name``: a resolved model (``resolve_enhance_model``); ``device``: where the video model runs
        (the rewrite runs there too, the weights wait on the CPU)."""
        self.name = name
        self.data_dir = Path(data_dir)
        self.device = torch.device(device)
        self.model: Any = None
        self.tokenizer: Any = None
        self._failed_at: float | None = None
        self._load_error = ""
        self._lock = threading.Lock()
        #: Rewrites done, for the logs and tests.
        self.uses = 0

    @property
    def placement(self) -> str | None:
        """Where the model's weights are now (``cpu`` between rewrites); None before the first load."""
        if self.model is None:
            return None
        return str(next(self.model.parameters()).device.type)

    def _source(self) -> str:
        if self.name == TINY:
            return str(build_tiny_lm(self.data_dir / "models" / "tiny-lm"))
        return self.name

    def _dtype(self) -> torch.dtype:
        if self.device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def load(self) -> None:
        """Load the tokenizer and the model into CPU memory (once). Raises ``EnhanceError``."""
        if self.model is not None:
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_LOAD_SECONDS:
            raise EnhanceError(f"not loaded ({self._load_error}); tried again later")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        try:
            source = self._source()
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=self._dtype()).eval()
            if not getattr(tokenizer, "chat_template", None):
                raise EnhanceError(f"`{self.name}` has no chat template: use an instruction-tuned model")
        except Exception as exc:
            self._failed_at = time.monotonic()
            self._load_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("prompt enhancer %s could not be loaded: %s", self.name, self._load_error)
            raise EnhanceError(self._load_error) from exc
        self.tokenizer, self.model = tokenizer, model
        self._failed_at = None
        params = sum(p.numel() for p in model.parameters())
        log.info(
            "prompt enhancer %s loaded in %.1f s (%.2fB parameters, %s, waits on the CPU between uses)",
            self.name,
            time.perf_counter() - t0,
            params / 1e9,
            str(self._dtype()).removeprefix("torch."),
        )

    @contextlib.contextmanager
    def _on_run_device(self) -> Iterator[None]:
        """The model on the run device for the rewrite, back in CPU memory afterwards (also on errors)."""
        if self.device.type == "cpu":
            yield
            return
        try:
            self.model.to(self.device)
            yield
        finally:
            self.model.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def rewrite(self, prompt: str, *, family: str, verb: str = "text") -> str:
        """The rewritten ``prompt`` for a job of ``family`` and ``verb``. Raises ``EnhanceError``."""
        with self._lock:
            self.load()
            messages = [
                {"role": "system", "content": instruction(family, verb)},
                {"role": "user", "content": prompt},
            ]
            try:
                text = self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
                inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
                with self._on_run_device(), torch.inference_mode():
                    inputs = {k: v.to(self.device) for k, v in inputs.items()}
                    out = self.model.generate(
                        **inputs,
                        max_new_tokens=MAX_NEW_TOKENS,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                    )
                    new_tokens = out[0, inputs["input_ids"].shape[1] :].to("cpu")
            except Exception as exc:
                raise EnhanceError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            self.uses += 1
            return clean_output(self.tokenizer.decode(new_tokens, skip_special_tokens=True))


def enhance(
    enhancer: PromptEnhancer | None, prompt: str, *, family: str, verb: str, job_id: int
) -> Enhancement:
    """Rewrite one job's prompt, never raising: a missing or failing enhancer gives the note that the
    member's prompt is used as written."""
    if enhancer is None:
        log.warning("job %s: asked for prompt enhancement, but this worker has none", job_id)
        return Enhancement(None, ENHANCE_UNAVAILABLE)
    t0 = time.perf_counter()
    try:
        rewritten = enhancer.rewrite(prompt, family=family, verb=verb)
    except Exception as exc:  # anything: the video is still made, from the member's words
        log.warning("job %s: prompt enhancement failed (%s); using the prompt as written", job_id, exc)
        return Enhancement(None, ENHANCE_FAILED, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    log.info(
        "job %s: prompt enhanced by %s in %.1f s (%d -> %d characters; weights now on %s)",
        job_id,
        enhancer.name,
        seconds,
        len(prompt),
        len(rewritten),
        enhancer.placement,
    )
    return Enhancement(rewritten, None, seconds)


def load_enhancer(setting: str, *, data_dir: Path, pipeline: Any) -> PromptEnhancer | None:
    """The enhancer for ``VIDEOBOT_ENHANCE_MODEL`` beside the loaded video ``pipeline`` (a ``VideoPipeline``:
    it rewrites on that pipeline's device; ``auto`` is the tiny model beside a tiny video model), not
    loaded yet: the first job that asks loads it. None when it is off."""
    from videobot.presets import tiny_family

    name = resolve_enhance_model(setting, video_model_is_tiny=tiny_family(pipeline.preset) is not None)
    if name is None:
        log.info("VIDEOBOT_ENHANCE_MODEL=off: prompt enhancement is off on this worker")
        return None
    log.info("prompt enhancer %s: loaded on the first job that asks for it", name)
    return PromptEnhancer(name, data_dir=data_dir, device=pipeline.device)
