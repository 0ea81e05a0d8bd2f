"""Server styles in the core (real SQLite file; PostgreSQL when configured): what a moderator may add
(a Hub repo id and a weight file, nothing else), the audit trail, the per-server limit, a job's
snapshot, the migration, and the claim that prefers a worker's loaded style without breaking fair share."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.core.test_queue import GUILD, req, result
from videobot import styles
from videobot.db import Database
from videobot.errors import InvalidParameters
from videobot.guilds import InvalidConfig
from videobot.jobs import JobQueue, QueueConfig
from videobot.migrate import downgrade, upgrade
from videobot.models import ModAction
from videobot.presets import PRESETS, GenerationParams, offers_styles, plan, resolve_preset

INK = "artist/ink-lora:ink.safetensors"


async def test_moderators_add_list_and_remove_styles_with_an_audit_trail(db: Database) -> None:
    async with db.transaction() as s:
        info = await styles.add_style(
            s, GUILD, "Ink", INK, scale=0.8, trigger_words=" inkwash\n style ", actor_id=5, reason="fun"
        )
        await styles.add_style(s, GUILD, "neon_80s", "a/b:sub/dir/neon.safetensors", actor_id=5)
        await styles.add_style(s, GUILD + 1, "ink", "x/y:z.safetensors", actor_id=6)  # another server
    assert info == styles.StyleInfo("ink", "artist/ink-lora", "ink.safetensors", 0.8, "inkwash style")
    async with db.transaction() as s:
        assert [x.name for x in await styles.list_styles(s, GUILD)] == ["ink", "neon_80s"]
        assert await styles.style_names(s, GUILD, "NEO") == ["neon_80s"]
        assert (await styles.find_style(s, GUILD, "INK")).source == INK
        with pytest.raises(InvalidConfig, match="already has a style `ink`"):
            await styles.add_style(s, GUILD, "INK", INK, actor_id=5)
    async with db.transaction() as s:
        removed = await styles.remove_style(s, GUILD, "ink", actor_id=7)
        assert removed is not None and removed.source == INK
        assert await styles.remove_style(s, GUILD, "ink", actor_id=7) is None
        with pytest.raises(InvalidParameters, match="has no style `ink`.*`style` option"):
            await styles.find_style(s, GUILD, "ink")
        actions = (await s.scalars(select(ModAction).where(ModAction.guild_id == GUILD))).all()
    assert [(a.action, a.actor_id, a.details["name"]) for a in actions] == [
        ("config.style_add", 5, "ink"),
        ("config.style_add", 5, "neon_80s"),
        ("config.style_remove", 7, "ink"),
    ]
    assert actions[0].reason == "fun" and actions[0].details["source"] == INK


@pytest.mark.parametrize(
    "source",
    [
        "https://huggingface.co/a/b/resolve/main/x.safetensors",
        "/srv/loras/x.safetensors",
        "a/b",
        "a/b:x.bin",
        "a/b:../x.safetensors",
        "a/b:/etc/x.safetensors",
        "a--b/c:x.safetensors",
        "hf://a/b:x.safetensors",
        "a/b:x.safetensors:y",
    ],
)
def test_a_source_is_a_hub_repo_and_a_weight_file_and_nothing_else(source: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        styles.parse_source(source)
    assert "e.g. `owner/repo:style.safetensors` (no links or file paths)" in str(err.value)


@pytest.mark.parametrize("name", ["two words", "", "x" * 33, "-dash", "émoji", "a/b"])
def test_a_style_name_is_a_short_slug(name: str) -> None:
    with pytest.raises(InvalidConfig, match="cannot be a style name"):
        styles.check_name(name)


def test_scales_and_trigger_words_are_checked() -> None:
    for bad in (0, 11, float("nan"), True):
        with pytest.raises(InvalidConfig, match="between -10 and 10"):
            styles.check_scale(bad)
    with pytest.raises(InvalidConfig, match="at most 200"):
        styles.clean_trigger("x" * 201)


async def test_a_server_has_at_most_25_styles(db: Database) -> None:
    guild = GUILD + 25
    async with db.transaction() as s:
        for i in range(styles.MAX_STYLES):
            await styles.add_style(s, guild, f"s{i}", INK, actor_id=1)
        with pytest.raises(InvalidConfig, match="25 styles, the most"):
            await styles.add_style(s, guild, "one-more", INK, actor_id=1)


def test_a_job_snapshots_its_style_and_old_rows_load() -> None:
    info = styles.StyleInfo("ink", "artist/ink-lora", "ink.safetensors", 0.8, "inkwash")
    params = plan(PRESETS["tiny"], "a boat", seed=1).to_dict() | styles.job_fields(info)
    loaded = GenerationParams.from_dict(params)
    assert (loaded.style, loaded.style_source, loaded.style_scale, loaded.style_trigger) == (
        "ink",
        INK,
        0.8,
        "inkwash",
    )
    old = {k: v for k, v in params.items() if not k.startswith("style")}
    assert GenerationParams.from_dict(old).style is None
    assert styles.model_prompt("a boat", "inkwash") == "inkwash, a boat"
    assert styles.model_prompt("a boat", None) == "a boat"


def test_which_models_offer_styles(tmp_path: Path) -> None:
    """Every family's pipelines have diffusers' LoRA loader; a checkpoint of a class without one does not."""
    import diffusers

    from videobot.presets import LORA_PIPELINES

    for name in LORA_PIPELINES:
        assert hasattr(getattr(diffusers, name), "load_lora_weights"), name
    assert all(p.styles for p in PRESETS.values())
    assert offers_styles("auto") and offers_styles("tiny") and not offers_styles("no such model")
    folder = tmp_path / "wan-vace"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "WanVACEPipelineNoLora"}')
    assert not resolve_preset(str(folder)).styles


async def test_migration_0023_adds_and_drops_the_styles_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await asyncio.to_thread(upgrade, url, "0021")
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    try:
        async with db.transaction() as s:
            await styles.add_style(s, GUILD, "ink", INK, actor_id=1)
        await db.dispose()
        await asyncio.to_thread(downgrade, url, "0021")
        async with db.sessionmaker() as s:
            tables = (
                (await s.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))).scalars().all()
            )
        assert "styles" not in tables and "jobs" in tables
    finally:
        await db.dispose()


def styled_req(user: int, source: str | None):  # type: ignore[no-untyped-def]
    params = {"prompt": "a fox", "num_inference_steps": 2}
    if source:
        params |= {"style": source.split("/")[0], "style_source": source}
    return req(user, params=params)


async def test_a_worker_prefers_jobs_of_a_style_it_has_loaded_among_equals(db: Database) -> None:
    q = JobQueue(db, QueueConfig(default_limit=100, max_queued_per_user=100))
    plain = (await q.submit(styled_req(31, None))).job.id
    other = (await q.submit(styled_req(31, "b/neon:n.safetensors"))).job.id
    ink = (await q.submit(styled_req(31, INK))).job.id
    c = await q.claim("w", styles=[INK])
    assert c is not None and c.job_id == ink  # the member's third job, but no adapter to load
    status, following = await q.complete_and_claim(c, result(), models=(), styles=["b/neon:n.safetensors"])
    assert following is not None and following.job_id == other
    await q.complete(following, result())
    c = await q.claim("w", styles=[INK])
    assert c is not None and c.job_id == plain
    await q.complete(c, result())


async def test_a_loaded_style_never_jumps_a_member_ahead_of_fair_share(db: Database) -> None:
    """Bob queued first, without a style; Alice then queued three jobs in the style the worker has
    loaded. Neither was served yet (equal for fair share), so Alice's styled job may go first; but then
    Bob is next, although all of Alice's other jobs are in the loaded style."""
    q = JobQueue(db, QueueConfig(default_limit=100, max_queued_per_user=100))
    alice, bob = 41, 42
    b = (await q.submit(styled_req(bob, None))).job.id
    a = [(await q.submit(styled_req(alice, INK))).job.id for _ in range(3)]
    order = []
    while (c := await q.claim("w", styles=[INK])) is not None:
        order.append(c.job_id)
        await q.complete(c, result())
    assert order == [a[0], b, a[1], a[2]]


def test_a_style_on_a_model_without_a_lora_loader_is_refused_with_the_reason(tmp_path: Path) -> None:
    from videobot import planning
    from videobot.settings import Settings

    folder = tmp_path / "wan-custom"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "WanCustomPipelineNoLora"}')
    settings = Settings(_env_file=None, VIDEOBOT_MODEL=str(folder))  # type: ignore[call-arg]
    assert not planning.offers_styles(settings)
    planning.check_style(settings, None)  # no style asked: nothing to refuse
    with pytest.raises(InvalidParameters, match="cannot use styles. Leave the style option empty"):
        planning.check_style(settings, "ink")
    tiny = Settings(_env_file=None, VIDEOBOT_MODEL="tiny")  # type: ignore[call-arg]
    planning.check_style(tiny, "ink")


def test_rerun_remix_and_extend_keep_the_style() -> None:
    from videobot import planning

    info = styles.StyleInfo("ink", "artist/ink-lora", "ink.safetensors", 0.8, "inkwash")
    tiny = PRESETS["tiny"]
    params = plan(tiny, "a boat", seed=1).to_dict() | styles.job_fields(info)
    target = planning.QueueTarget("tiny", tiny)
    bare = planning.build_params(planning.QueueTarget("auto", None), "a boat") | styles.job_fields(info)
    for made in (
        planning.rerun_params(params),
        planning.remix_params(params, "a ship", ""),
        planning.extend_params(target, params, "the ship sails on"),
        planning.extend_params(planning.QueueTarget("auto", None), bare, "on"),
    ):
        assert {k: made[k] for k in styles.JOB_KEYS} == styles.job_fields(info)
    # A bare request (``auto``) is planned on the worker with its style.
    from generator.worker import params_for

    assert params_for(tiny, bare).style_source == INK
