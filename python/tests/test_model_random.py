"""embedded:gpt-oss-20b-random and embedded:gpt-oss-120b-random: the full-size random models refuse the CPU,
say what they need, and take the reference settings."""

from __future__ import annotations

import pytest
import torch

from oss_finetune.embedded import EMBEDDED_NAMES, EMBEDDED_RANDOM_20B, EMBEDDED_RANDOM_120B, EMBEDDED_TINY_BASE
from oss_finetune.modeling.model import ModelLoadError, build_embedded_model, load_model
from oss_finetune.notebook import tutorial


def test_the_name_is_listed():
    assert EMBEDDED_RANDOM_20B == "embedded:gpt-oss-20b-random"
    assert EMBEDDED_RANDOM_20B in EMBEDDED_NAMES


def test_on_cpu_it_says_it_needs_a_gpu_and_names_the_default():
    with pytest.raises(ModelLoadError) as error:
        load_model({"name_or_path": EMBEDDED_RANDOM_20B, "device": "cpu"})
    message = str(error.value)
    assert "CUDA GPU" in message and "45 GiB" in message
    assert EMBEDDED_TINY_BASE in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_without_cuda_auto_device_fails_the_same_way():
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        build_embedded_model(EMBEDDED_RANDOM_20B, device="cpu")
    with pytest.raises(ModelLoadError, match="torch sees no CUDA GPU"):
        load_model({"name_or_path": EMBEDDED_RANDOM_20B})


def test_tutorial_settings_are_the_reference_ones():
    config = tutorial.settings(EMBEDDED_RANDOM_20B, "embedded:multilingual", MAX_STEPS=2, MAX_SEQ_LENGTH=1024)
    reference = tutorial.REFERENCE_SETTINGS
    assert config["model"]["name_or_path"] == EMBEDDED_RANDOM_20B
    assert config["lora"]["r"] == reference["lora"]["r"]
    assert config["lora"]["target_modules"] == reference["lora"]["target_modules"]
    assert config["training"]["batch_size"] == reference["training"]["batch_size"]
    assert config["training"]["gradient_accumulation_steps"] == reference["training"]["gradient_accumulation_steps"]
    assert config["training"]["learning_rate"] == reference["training"]["learning_rate"]
    assert config["training"]["max_steps"] == 2
    assert config["data"]["max_seq_length"] == 1024
    # Same as a hub model apart from the names.
    hub = tutorial.settings("openai/gpt-oss-20b", "embedded:multilingual", MAX_STEPS=2, MAX_SEQ_LENGTH=1024)
    assert {k: v for k, v in config.items() if k != "model"} == {k: v for k, v in hub.items() if k != "model"}


def test_only_the_tiny_models_get_the_cpu_settings():
    assert tutorial.is_tiny("embedded:tiny-base")
    assert tutorial.is_tiny("embedded:tiny")
    assert not tutorial.is_tiny(EMBEDDED_RANDOM_20B)
    assert not tutorial.is_tiny("openai/gpt-oss-20b")


def test_the_120b_needs_a_gpu_and_its_experts_in_mxfp4(monkeypatch):
    assert EMBEDDED_RANDOM_120B in EMBEDDED_NAMES and not tutorial.is_tiny(EMBEDDED_RANDOM_120B)
    with pytest.raises(ModelLoadError, match="about 65 GiB of memory with mxfp4_experts"):
        load_model({"name_or_path": EMBEDDED_RANDOM_120B, "device": "cpu", "mxfp4_experts": True})
    # On a GPU, bf16 is refused before anything is allocated, with the setting that makes it load.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ModelLoadError) as error:
        build_embedded_model(EMBEDDED_RANDOM_120B, device="cuda")
    assert "217 GiB" in str(error.value) and "mxfp4_experts" in str(error.value)
