"""The image safety classifier (generator/safety.py) on CPU, offline: the built-in tiny classifiers through
the real loading, preprocessing and forward pass; the timm ViT against transformers' independent ViT;
a transformers-format classifier folder; frame sampling and windows; load errors; the levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from generator.safety import (
    DEFAULT_SAFETY_MODEL,
    SAMPLED_FRAMES,
    SafetyClassifier,
    SafetyLoadError,
    TimmViT,
    resolve_safety_model,
    sample_indices,
)
from videobot.safety import DEFAULT_LEVEL, INPUT_LEVEL, THRESHOLDS, SafetyLevel, flagged, job_score, threshold


def frames(n: int = 17, h: int = 32, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def counting(classifier: SafetyClassifier) -> list[int]:
    """Record the batch size of every forward pass of the classifier's network."""
    seen: list[int] = []
    classifier.net.register_forward_pre_hook(lambda _m, args: seen.append(int(args[0].shape[0])))
    return seen


@pytest.mark.parametrize(("name", "expected"), [("tiny-safe", 0.0), ("tiny-unsafe", 1.0)])
def test_tiny_classifiers_score_exactly_through_the_real_forward_pass(
    name: str, expected: float, tmp_path: Path
) -> None:
    c = SafetyClassifier.load(name, data_dir=tmp_path)
    # Written as a timm checkpoint and loaded like a downloaded one.
    folder = tmp_path / "models" / name
    assert json.loads((folder / "config.json").read_text())["architecture"].startswith("vit_")
    assert c.labels == ["NSFW", "SFW"] and c.unsafe == [0]
    seen = counting(c)
    verdict = c.score_video(frames(17))  # 64x32 frames: two 32-px... scaled to the model's 64 px
    assert verdict.score == expected and verdict.model == name
    assert verdict.frames_scored == SAMPLED_FRAMES and 0 <= verdict.frame < 17
    assert seen == [SAMPLED_FRAMES * 2]  # one batch: 8 frames, each a 2:1 frame in two square windows
    assert c.score_image(Image.fromarray(frames(1)[0])).score == expected


def test_sampled_frames_are_evenly_spaced_and_an_extension_scores_its_new_part() -> None:
    assert sample_indices(121) == [0, 17, 34, 51, 69, 86, 103, 120]
    assert sample_indices(5) == [0, 1, 2, 3, 4]  # fewer than 8: every frame
    assert sample_indices(33, start=17) == [17, 19, 21, 23, 26, 28, 30, 32]  # 16 new frames after 17
    assert len(sample_indices(1000)) == SAMPLED_FRAMES


def test_the_highest_frame_counts_and_its_index_is_kept(tmp_path: Path) -> None:
    c = SafetyClassifier.load("tiny-safe", data_dir=tmp_path)
    clip = frames(33)
    marked = sample_indices(33)[5]
    clip[marked] = 255  # the picked frame scores high through a stand-in probability
    c.probabilities = lambda pictures: [  # type: ignore[method-assign]
        0.9 if p.min() == 255 else 0.1 for p in pictures
    ]
    verdict = c.score_video(clip)
    assert (verdict.score, verdict.frame) == (0.9, marked)


def test_windows_cover_the_whole_frame_in_both_orientations(tmp_path: Path) -> None:
    c = SafetyClassifier.load("tiny-safe", data_dir=tmp_path)
    s = c.size
    for w, h, n in ((160, 90, 2), (90, 160, 2), (100, 100, 1), (300, 90, 4)):
        rw, rh, corners = c.layout(w, h)
        assert min(rw, rh) == s and len(corners) == n
        along = [x if rw >= rh else y for x, y in corners]
        assert along[0] == 0 or n == 1
        assert along[-1] + s == max(rw, rh) or n == 1  # the last window reaches the far edge
        assert all(b - a <= s for a, b in zip(along, along[1:], strict=False))  # no gap between windows
        assert c.windows(np.zeros((2, h, w, 3), dtype=np.uint8)).shape == (2 * n, 3, s, s)
    # A wide picture whose right edge alone is white: the last window sees it, a centre crop would not.
    img = np.zeros((1, 90, 300, 3), dtype=np.uint8)
    img[:, :, -20:] = 255
    wins = c.windows(img)
    assert wins[-1][:, :, -1].min() > 200 and wins[1].max() < 50


def timm_to_transformers(sd: dict[str, torch.Tensor], dim: int) -> dict[str, torch.Tensor]:
    """timm ViT names to the installed transformers' ViT names (q, k, v split from qkv)."""
    out = {
        "vit.embeddings.cls_token": sd["cls_token"],
        "vit.embeddings.position_embeddings": sd["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "vit.layernorm.weight": sd["norm.weight"],
        "vit.layernorm.bias": sd["norm.bias"],
        "classifier.weight": sd["head.weight"],
        "classifier.bias": sd["head.bias"],
    }
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b, t = f"blocks.{i}.", f"vit.layers.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[b + f"attn.qkv.{kind}"].split(dim)
            out |= {
                t + f"attention.q_proj.{kind}": q,
                t + f"attention.k_proj.{kind}": k,
                t + f"attention.v_proj.{kind}": v,
                t + f"attention.o_proj.{kind}": sd[b + f"attn.proj.{kind}"],
                t + f"layernorm_before.{kind}": sd[b + f"norm1.{kind}"],
                t + f"layernorm_after.{kind}": sd[b + f"norm2.{kind}"],
                t + f"mlp.fc1.{kind}": sd[b + f"mlp.fc1.{kind}"],
                t + f"mlp.fc2.{kind}": sd[b + f"mlp.fc2.{kind}"],
            }
    return out


def test_timm_vit_gives_the_same_logits_as_transformers_vit_with_the_same_weights() -> None:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(3)
    ours = TimmViT(img_size=64, patch_size=16, embed_dim=48, depth=3, num_heads=3, num_classes=2).eval()
    for p in ours.parameters():  # every weight random, the class token and head included
        torch.nn.init.normal_(p, std=0.2)
    theirs = ViTForImageClassification(
        ViTConfig(
            hidden_size=48,
            num_hidden_layers=3,
            num_attention_heads=3,
            intermediate_size=192,
            image_size=64,
            patch_size=16,
            num_labels=2,
            layer_norm_eps=1e-6,
            hidden_act="gelu",
            qkv_bias=True,
        )
    ).eval()
    missing, unexpected = theirs.load_state_dict(timm_to_transformers(ours.state_dict(), 48), strict=False)
    assert not missing and not unexpected
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), theirs(pixel_values=x).logits
    assert a.abs().max() > 0.1  # not a degenerate comparison
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_a_transformers_classifier_folder_loads_and_its_nsfw_label_counts(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path / "falcon-like"
    torch.manual_seed(1)
    net = ViTForImageClassification(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=16,
            num_labels=2,
            id2label={0: "normal", 1: "nsfw"},
            label2id={"normal": 0, "nsfw": 1},
        )
    )
    net.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    c = SafetyClassifier.load(str(folder), data_dir=tmp_path)
    assert c.unsafe == [1] and c.size == 32
    img = Image.fromarray(frames(1, 32, 32)[0])
    got = c.score_image(img).score
    x = (torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        want = torch.softmax(net.eval()(pixel_values=x).logits, -1)[0, 1].item()
    assert got == pytest.approx(want, abs=1e-5) and 0.0 < got < 1.0


def test_load_errors_say_what_to_do(tmp_path: Path) -> None:
    # Not in the Hugging Face cache, and the tests are offline: the message says how to go on.
    with pytest.raises(SafetyLoadError) as err:
        SafetyClassifier.load("someorg/no-such-classifier", data_dir=tmp_path)
    assert "someorg/no-such-classifier" in str(err.value) and "VIDEOBOT_SAFETY_MODEL=off" in str(err.value)
    # A classifier none of whose labels means unsafe cannot be used.
    folder = tmp_path / "cats"
    folder.mkdir()
    net = TimmViT(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=2)
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    config = {
        "architecture": "vit_tiny_patch16_384",
        "model_args": {"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 32},
        "num_classes": 2,
        "pretrained_cfg": {"input_size": [3, 32, 32], "label_names": ["cat", "dog"]},
    }
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SafetyLoadError, match="none of its labels"):
        SafetyClassifier.load(str(folder), data_dir=tmp_path)
    (folder / "config.json").write_text(json.dumps(config | {"architecture": "resnet50"}))
    with pytest.raises(SafetyLoadError, match="not supported"):
        SafetyClassifier.load(str(folder), data_dir=tmp_path)


def test_auto_is_the_default_model_or_tiny_safe_beside_a_tiny_video_model() -> None:
    assert resolve_safety_model("auto", video_model_is_tiny=False) == DEFAULT_SAFETY_MODEL
    assert resolve_safety_model("auto", video_model_is_tiny=True) == "tiny-safe"
    assert resolve_safety_model("OFF", video_model_is_tiny=False) is None
    assert resolve_safety_model("tiny-unsafe", video_model_is_tiny=False) == "tiny-unsafe"


def test_levels_are_thresholds_on_the_score() -> None:
    assert DEFAULT_LEVEL == INPUT_LEVEL == SafetyLevel.STRICT
    assert threshold("strict") == THRESHOLDS[SafetyLevel.STRICT] < threshold("standard")
    assert threshold("off") is None
    assert flagged(1.0) and not flagged(0.0) and not flagged(None)
    assert flagged(0.5, "strict") and not flagged(0.5, "standard") and not flagged(1.0, "off")
    assert job_score([0.1, None, 0.8]) == 0.8 and job_score([None]) is None and job_score([]) is None


# ------------------------------------------------------------------ videobot generate
def test_generate_prints_each_videos_score_and_refuses_a_flagged_picture(
    tiny_data_dir: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from generator.generate_cli import main
    from videobot.safety import UNSAFE_INPUT

    base = ["a cat surfing", "--model", "tiny", "--seed", "7", "--data-dir", str(tiny_data_dir)]
    assert main([*base, "-o", str(tmp_path / "auto.mp4")]) == 0  # auto: tiny-safe beside the tiny model
    assert "safety score 0.0000 (frame 0, 8 frames scored by tiny-safe; strict flags above 0.3)\n" in (
        capsys.readouterr().out
    )
    out = tmp_path / "v.mp4"
    assert main([*base, "-o", str(out), "--variations", "2", "--safety-model", "tiny-unsafe"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("by tiny-unsafe; strict flags above 0.3): FLAGGED") == 2
    assert main([*base, "-o", str(tmp_path / "off.mp4"), "--safety-model", "off"]) == 0
    assert "safety check off" in capsys.readouterr().out

    picture = tmp_path / "in.png"
    Image.fromarray(frames(1, 40, 70)[0]).save(picture)
    refused = tmp_path / "refused.mp4"
    assert main([*base, "-o", str(refused), "--image", str(picture), "--safety-model", "tiny-unsafe"]) == 2
    err = capsys.readouterr().err
    assert "Picture safety score 1.0000 (tiny-unsafe)" in err and f"error: {UNSAFE_INPUT}" in err
    assert not refused.exists()


@pytest.mark.parametrize("locale", ["de", "es", "fr", "it", "ja", "pt_BR"])
def test_the_refusal_stored_in_english_is_shown_translated(locale: str) -> None:
    from videobot.i18n import render
    from videobot.jobs.records import job_error
    from videobot.models import Job
    from videobot.safety import UNSAFE_INPUT

    job = Job(status="failed", error_code="unsafe_input", error_message=UNSAFE_INPUT)
    shown = render(locale, job_error(job))
    assert shown and shown != UNSAFE_INPUT and "{" not in shown


def test_timm_configs_read_the_vit_size_and_accept_training_only_arguments() -> None:
    from generator.safety import _timm_vit_args

    base = {"architecture": "vit_tiny_patch16_384", "num_classes": 2, "global_pool": "token"}
    assert _timm_vit_args(base | {"model_args": {"drop_rate": 0.1, "drop_path_rate": 0.05}}) == {
        "embed_dim": 192,
        "depth": 12,
        "num_heads": 3,
        "patch_size": 16,
        "img_size": 384,
        "num_classes": 2,
    }
    assert _timm_vit_args(base | {"architecture": "vit_base_patch16_224.augreg_in21k"})["embed_dim"] == 768
    for bad in (
        {"global_pool": "avg"},
        {"model_args": {"class_token": False}},
        {"architecture": "convnext_tiny"},
    ):
        with pytest.raises(ValueError, match="not supported"):
            _timm_vit_args(base | bad)
