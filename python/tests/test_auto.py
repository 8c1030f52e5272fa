"""Where each `auto` setting lands (oss_finetune.modeling.auto): the planner and the trainer ask the
same functions, so these answers are what both say and do."""

from oss_finetune.modeling import auto


def test_weight_dtype():
    assert auto.weight_dtype("auto", on_gpu=True)[0] == "bfloat16"
    assert auto.weight_dtype("auto", on_gpu=True, bf16_supported=False)[0] == "float32"
    assert auto.weight_dtype("auto", on_gpu=False)[0] == "float32"
    assert auto.weight_dtype("float16", on_gpu=False) == ("float16", "float16: asked for")


def test_engine():
    assert auto.engine("auto", on_gpu=True) == "fast"
    assert auto.engine("auto", on_gpu=True, supported=False) == "transformers"
    assert auto.engine("auto", on_gpu=False) == "fast"
    assert auto.engine("auto", on_gpu=False, supported=False) == "transformers"
    assert auto.engine("transformers", on_gpu=True) == "transformers"


def test_optimizer():
    assert auto.optimizer("auto", on_gpu=True, bitsandbytes=True) == "adamw_8bit"
    assert auto.optimizer("auto", on_gpu=True, bitsandbytes=False) == "adamw_torch"
    assert auto.optimizer("auto", on_gpu=False, bitsandbytes=True) == "adamw_torch"
    assert auto.optimizer("adamw_torch", on_gpu=True, bitsandbytes=True) == "adamw_torch"


def test_pack_tokens():
    assert auto.pack_tokens(None, gradient_checkpointing=True, expert_lora=False) == 16_384
    assert auto.pack_tokens(None, gradient_checkpointing=True, expert_lora=True) == 6_144
    assert auto.pack_tokens(None, gradient_checkpointing=False, expert_lora=True) == 4_096
    assert auto.pack_tokens(2_048, gradient_checkpointing=True, expert_lora=False) == 2_048


def test_the_planner_and_the_trainer_agree_on_a_cpu_run():
    import oss_finetune.embedded  # noqa: F401 - registers embedded:tiny
    from oss_finetune.modeling.model import apply_lora, build_embedded_model
    from oss_finetune.training.memory import plan_memory
    from oss_finetune.training.trainer import Trainer

    plan = plan_memory({"model": {"name_or_path": "embedded:tiny", "device": "cpu"}}, device="cpu")
    model = apply_lora(build_embedded_model("embedded:tiny"), {"r": 4}, seed=0)
    trainer = Trainer(model, [{"input_ids": [1, 2, 3], "trained": [False, True, True]}], {"max_steps": 1})
    assert plan.settings["optimizer"] == "adamw_torch"
    assert plan.engine == trainer._choose_engine(model.device) == "fast"
