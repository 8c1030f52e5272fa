"""The environment check names the hardware, the libraries and what fits."""

from oss_finetune.notebook import environment


def test_report_names_cpus_memory_and_library_versions():
    info = environment.report()
    assert info["cpus"] >= 1
    assert info["libraries"]["torch"] and info["libraries"]["transformers"] and info["libraries"]["peft"]
    text = environment.as_text(info)
    assert f"{info['cpus']} CPUs" in text
    assert "torch " + info["libraries"]["torch"] in text


def test_advice_depends_on_gpu_memory():
    base = {"gpus": []}
    assert "embedded tiny GPT-OSS" in environment.advice(base)
    assert "fits in bf16" in environment.advice({"gpus": [{"name": "H100", "memory_gib": 79.6, "bf16": True}]})
    assert "--mxfp4-experts" in environment.advice({"gpus": [{"name": "RTX 4090", "memory_gib": 23.6, "bf16": True}]})
    assert "too little" in environment.advice({"gpus": [{"name": "T4", "memory_gib": 8.0, "bf16": False}]})


def test_several_gpus_that_each_hold_the_model_are_offered_for_data_parallel():
    h100 = {"name": "H100", "memory_gib": 79.6, "bf16": True}
    t4 = {"name": "T4", "memory_gib": 15.0, "bf16": False}
    assert "--gpus" not in environment.advice({"gpus": [h100]})
    assert "With 2 such GPUs, `%oss_finetune train --gpus 2`" in environment.advice({"gpus": [h100, h100]})
    # A small card beside a large one cannot hold a bf16 replica.
    assert "--gpus" not in environment.advice({"gpus": [h100, t4]})
    assert "--gpus 2" in environment.advice({"gpus": [dict(t4, memory_gib=24.0)] * 2})


def test_html_is_escaped():
    info = environment.report()
    info["gpus"] = [{"name": "<script>x</script>", "memory_gib": 1.0, "bf16": False}]
    page = environment.as_html(info)
    assert "<script>" not in page and "&lt;script&gt;" in page
