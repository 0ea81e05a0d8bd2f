"""Validate recorded request bodies against Discord's OpenAPI description (when the file is present)."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

# <repo>/../shared/discord-openapi.json: the spec lives beside the repo and must never be committed.
DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "discord-openapi.json"


def spec_path() -> Path:
    """Where the spec is looked for: ``$DISCORD_OPENAPI_PATH`` or the shared folder beside the repo."""
    return Path(os.environ.get("DISCORD_OPENAPI_PATH") or DEFAULT_SPEC_PATH)


class SpecValidator:
    """Finds the operation for a request and validates its JSON body against the request schema."""

    def __init__(self, spec: dict[str, Any]) -> None:
        spec = copy.deepcopy(spec)
        schemas = spec["components"]["schemas"]
        # Discord accepts integer snowflakes in requests and discord.py sends new attachments as
        # {"id": 0}, as Discord's own docs show; the spec only allows strings.
        if "SnowflakeType" in schemas:
            schemas["SnowflakeType"] = {
                "anyOf": [schemas["SnowflakeType"], {"type": "integer", "minimum": 0}]
            }
        self._components = spec["components"]
        self._paths: list[tuple[re.Pattern[str], int, str, dict[str, Any]]] = []
        for template, item in spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            self._paths.append((pattern, literal, template, item))
        self._validators: dict[tuple[str, str, str], Draft202012Validator | None] = {}

    def operation(self, method: str, path: str) -> str | None:
        """The spec's path template for ``path`` (``/channels/1/messages`` -> ``/channels/{channel_id}/messages``)."""
        matches = [
            (lit, tpl) for pat, lit, tpl, item in self._paths if pat.match(path) and method.lower() in item
        ]
        # Literal segments (@original, @me) beat parameters, as in Discord's router.
        return max(matches)[1] if matches else None

    def _validator(self, template: str, method: str, media: str) -> Draft202012Validator | None:
        key = (template, method, media)
        if key not in self._validators:
            op = next(item for _, _, tpl, item in self._paths if tpl == template)[method.lower()]
            content = (op.get("requestBody") or {}).get("content", {})
            schema = (content.get(media) or content.get("application/json") or {}).get("schema")
            # Refs are "#/components/...": give them a root that has the components.
            self._validators[key] = (
                None if schema is None else Draft202012Validator({**schema, "components": self._components})
            )
        return self._validators[key]

    def validate(self, method: str, path: str, body: Any, *, multipart: bool = False) -> list[str]:
        """Errors for ``body`` (a JSON value, or ``payload_json`` of a multipart request); [] when valid."""
        template = self.operation(method, path)
        if template is None:
            return []
        validator = self._validator(
            template, method, "multipart/form-data" if multipart else "application/json"
        )
        if validator is None:
            return []
        errors = []
        for err in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            # anyOf/oneOf errors are long: the most relevant sub-error says what and where.
            leaf = best_match(err.context) if err.context else err
            where = "".join(f"[{p!r}]" for p in leaf.absolute_path) or "(body)"
            errors.append(f"{method} {template} {where}: {leaf.message[:300]}")
        return errors


@functools.cache
def _load(path: str, mtime: float) -> SpecValidator:
    with open(path, encoding="utf-8") as f:
        return SpecValidator(json.load(f))


def load_validator(path: Path | None = None) -> SpecValidator | None:
    """The cached validator for the spec at ``path`` (default :func:`spec_path`), or None when absent."""
    path = path or spec_path()
    if not path.is_file():
        return None
    return _load(str(path), path.stat().st_mtime)
