"""Prompt enhancement on the worker: the tiny random language model rewrites a prompt through the real
transformers loading and generation, the rewrite is what reaches the real diffusers pipeline, and a
missing or broken enhancer falls back to the member's prompt with a note stored for the result."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from generator import enhance as enh
from generator.enhance import (
    ENHANCE_BLOCKED,
    ENHANCE_FAILED,
    ENHANCE_UNAVAILABLE,
    EnhanceError,
    PromptEnhancer,
    clean_output,
    resolve_enhance_model,
)
from generator.enhance_guides import FROM_PICTURE, LTX, WAN, instruction
from generator.worker import Worker
from tests.generator.test_worker import run_until, settings_for, submit
from videobot import guilds
from videobot.db import Database
from videobot.jobs import JobQueue, QueueConfig
from videobot.migrate import upgrade
from videobot.presets import MAX_PROMPT_CHARS

PROMPT = "a fox running through snow"


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lm-data")


@pytest.fixture
async def qdb(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    db = Database(url)
    yield db, data
    await db.dispose()


@pytest.fixture
def prompts_seen(tiny_pipeline, monkeypatch: pytest.MonkeyPatch) -> list[str]:  # type: ignore[no-untyped-def]
    """Every ``prompt`` argument the real diffusers pipeline of the tiny model is called with."""
    seen: list[str] = []
    pipe = tiny_pipeline.pipes["text"]
    real_call = type(pipe).__call__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["prompt"])
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    return seen


def test_setting_resolves_like_the_safety_model() -> None:
    assert resolve_enhance_model("auto", video_model_is_tiny=True) == "tiny"
    assert resolve_enhance_model("auto", video_model_is_tiny=False) == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_enhance_model("off", video_model_is_tiny=False) is None
    assert resolve_enhance_model("  ", video_model_is_tiny=False) is None
    assert resolve_enhance_model("/srv/lm", video_model_is_tiny=True) == "/srv/lm"


def test_each_family_gets_its_guide_and_image_jobs_the_adapted_one() -> None:
    assert instruction("wan") == WAN and instruction("wan22") == WAN
    assert instruction("ltx") == LTX and "150 words" in LTX
    assert "sound" in instruction("ltx2")
    assert instruction("ltx", "image") == LTX + FROM_PICTURE
    assert "cannot see" in instruction("wan", "extend")
    assert instruction("cogvideox") == WAN  # no published guide of its own: the most general one


def test_the_answer_is_cleaned_into_one_bounded_paragraph() -> None:
    assert clean_output('Here is the enhanced prompt:\n\n"A red fox runs\nthrough fresh snow."') == (
        "A red fox runs through fresh snow."
    )
    assert clean_output("Enhanced prompt: **A fox** leaps over a log.\x07") == "A fox leaps over a log."
    long = " ".join(f"Fox{i} jumps." for i in range(200))  # varied, but too long
    cut = clean_output(long)
    assert len(cut) <= MAX_PROMPT_CHARS and cut.endswith(".")
    for garbage in ("", '""', "Sure!", "snow " * 40):
        with pytest.raises(EnhanceError):
            clean_output(garbage)


def test_tiny_model_rewrites_the_same_way_twice_and_waits_on_the_cpu(lm_dir: Path) -> None:
    enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu")
    assert enhancer.placement is None  # nothing loaded until a job asks
    first = enhancer.rewrite(PROMPT, family="ltx")
    second = enhancer.rewrite(PROMPT, family="ltx")
    assert first == second != PROMPT  # greedy: a Rerun gets the same enhanced prompt
    assert 3 <= len(first.split()) and len(first) <= MAX_PROMPT_CHARS
    assert enhancer.placement == "cpu" and enhancer.uses == 2
    # Another family's instruction is another input: the answer changes with it.
    assert enhancer.rewrite(PROMPT, family="wan", verb="image") != first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_model_holds_no_gpu_memory_between_rewrites(lm_dir: Path) -> None:
    enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device="cuda")
    enhancer.load()
    before = torch.cuda.memory_allocated()
    assert enhancer.rewrite(PROMPT, family="ltx")
    assert enhancer.placement == "cpu"
    assert torch.cuda.memory_allocated() == before


async def test_the_video_is_made_from_the_enhanced_prompt(qdb, tiny_pipeline, lm_dir, prompts_seen) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, enhance=True)
    enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device=tiny_pipeline.device)
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], enhancer=enhancer
    )
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    job = await q.get(job_id)
    assert job is not None
    expected = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu").rewrite(PROMPT, family="ltx")
    assert job.enhanced_prompt == expected and job.enhance_note is None
    assert prompts_seen == [expected]  # what the diffusers pipeline got
    assert job.params["prompt"] == PROMPT  # the member's words stay (Remix pre-fills them)
    assert enhancer.placement == "cpu"


async def test_a_job_that_does_not_ask_never_loads_the_model(
    qdb, tiny_pipeline, lm_dir, prompts_seen
) -> None:  # type: ignore[no-untyped-def]
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q)
    enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu")
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], enhancer=enhancer
    )
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    job = await q.get(job_id)
    assert job is not None and job.enhanced_prompt is None and job.enhance_note is None
    assert prompts_seen == [PROMPT] and enhancer.placement is None


@pytest.mark.parametrize("broken", ["missing folder", "generation error", "no enhancer"])
async def test_a_failing_enhancer_falls_back_to_the_prompt_as_written(  # type: ignore[no-untyped-def]
    qdb, tiny_pipeline, lm_dir, prompts_seen, broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, enhance=True)
    enhancer: PromptEnhancer | None
    if broken == "missing folder":
        enhancer = PromptEnhancer(str(data / "no-such-model"), data_dir=data, device="cpu")
    elif broken == "generation error":
        enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu")
        enhancer.load()

        def explode(*args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("CUDA error: device-side assert triggered")

        monkeypatch.setattr(enhancer.model, "generate", explode)
    else:
        enhancer = None
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], enhancer=enhancer
    )
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    job = await q.get(job_id)
    assert job is not None and job.enhanced_prompt is None
    assert job.enhance_note == (ENHANCE_UNAVAILABLE if broken == "no enhancer" else ENHANCE_FAILED)
    assert prompts_seen == [PROMPT]
    assert await q.get_result(job_id) is not None


def test_a_model_that_failed_to_load_is_not_tried_again_at_once(tmp_path: Path) -> None:
    enhancer = PromptEnhancer(str(tmp_path / "nothing"), data_dir=tmp_path, device="cpu")
    with pytest.raises(EnhanceError):
        enhancer.rewrite(PROMPT, family="wan")
    (tmp_path / "nothing").mkdir()  # still broken; the next job must not wait for another load
    with pytest.raises(EnhanceError, match="tried again later"):
        enhancer.rewrite(PROMPT, family="wan")
    assert enh.RETRY_LOAD_SECONDS >= 60


async def test_a_cancel_while_the_model_loads_stops_before_rendering(  # type: ignore[no-untyped-def]
    qdb, tiny_pipeline, lm_dir, prompts_seen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first use may download the model for minutes: a /cancel meanwhile ends the job without a render."""
    import asyncio
    import threading

    db, data = qdb
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, enhance=True)
    enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu")
    loading, release = threading.Event(), threading.Event()
    real_load = enhancer.load

    def slow_load() -> None:  # the real load, held back like a long download
        loading.set()
        release.wait(30)
        real_load()

    monkeypatch.setattr(enhancer, "load", slow_load)
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], enhancer=enhancer
    )
    task = asyncio.create_task(worker.run())
    try:
        assert await asyncio.to_thread(loading.wait, 30)
        await q.cancel(job_id, user_id=1)
        await asyncio.sleep(2.5)  # the worker's heartbeat (every second) sees the flag
        release.set()
        deadline = asyncio.get_running_loop().time() + 30
        while (await q.get(job_id)).status != "cancelled":  # type: ignore[union-attr]
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    finally:
        release.set()
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert prompts_seen == [] and await q.get_result(job_id) is None


async def test_an_enhanced_prompt_with_words_the_server_blocks_is_not_used(  # type: ignore[no-untyped-def]
    qdb, tiny_pipeline, lm_dir, prompts_seen
) -> None:
    """The server's blocklist holds for the language model's words as it does for the member's: the
    video is made from the member's prompt, and the result says why."""
    db, data = qdb
    rewrite = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu").rewrite(PROMPT, family="ltx")
    word = next(w for w in rewrite.split() if w.isalpha() and w.lower() not in PROMPT.split())
    async with db.transaction() as s:
        assert await guilds.add_block(s, 1, word, actor_id=9)  # the guild submit() uses
    q = JobQueue(db, QueueConfig(lease_seconds=5))
    job_id = await submit(q, enhance=True)
    enhancer = PromptEnhancer("tiny", data_dir=lm_dir, device="cpu")
    worker = Worker(
        settings_for(data, db.url), q, tiny_pipeline, worker_id="w1", models=["tiny"], enhancer=enhancer
    )
    assert await run_until(worker, q, job_id, {"succeeded", "failed"}) == "succeeded"
    job = await q.get(job_id)
    assert job is not None and job.enhanced_prompt is None and job.enhance_note == ENHANCE_BLOCKED
    assert prompts_seen == [PROMPT]  # the member's words, not the blocked rewrite
    assert enhancer.uses == 1


def test_two_workers_building_the_tiny_lm_at_once_both_get_a_whole_one(tmp_path: Path) -> None:
    """Two workers' first enhance job at the same moment: each builds next to the folder and moves its
    build into place, so neither loads a half-written model; a half-written folder left by a killed
    build is replaced."""
    import subprocess
    import sys

    folder = tmp_path / "models" / "tiny-lm"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{")  # a build killed half-way
    code = (
        "import sys; from pathlib import Path; from generator.enhance import PromptEnhancer, build_tiny_lm; "
        "p = build_tiny_lm(Path(sys.argv[1])); "
        "print(PromptEnhancer(str(p), data_dir=p.parent, device='cpu').rewrite('a fox', family='ltx'))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0] and outputs[0][0].strip()  # the same whole model
    assert [p.name for p in folder.parent.iterdir()] == ["tiny-lm"]  # no build left behind


def test_the_tiny_lm_is_written_beside_its_folder_then_moved_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the tiny LM is written, the folder a worker loads from is not touched: the build goes into
    a folder of its own and is moved into place once whole."""
    folder = tmp_path / "tiny-lm"
    folder.mkdir()
    (folder / "config.json").write_text("{")  # a build killed half-way
    seen: list[tuple[Path, list[str]]] = []
    real = enh._write_tiny_lm

    def spy(where: Path) -> None:
        seen.append((where, sorted(p.name for p in folder.iterdir())))
        real(where)

    monkeypatch.setattr(enh, "_write_tiny_lm", spy)
    assert enh.build_tiny_lm(folder) == folder
    [(where, during)] = seen
    assert where.parent == folder.parent and where != folder and during == ["config.json"]
    assert not where.exists()  # moved in
    assert PromptEnhancer(str(folder), data_dir=tmp_path, device="cpu").rewrite(PROMPT, family="ltx")
    assert enh.build_tiny_lm(folder) == folder and len(seen) == 1  # a whole one is kept
