"""Sharded loading, read as a manual: under torchrun with ``training.sharding: fsdp``, a model of
checkpoint files is built on the meta device on every rank, sharded, and each rank reads only its rows
of every weight, so that no rank ever holds the whole model (gpt-oss-120b in bf16 is some 217 GiB).

The embedded tiny model is written to a folder of bf16 safetensors, as ``save_pretrained`` writes
any checkpoint, and that folder is loaded: two gloo ranks on the CPU reading their shares train as one
process loading the whole folder does (losses and adapter to 1e-5), and a run stopped in one process
resumes on them. The shares put together are the whole model (its MXFP4 form too, expanded slice by
slice), and each rank holds half of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_fsdp import CONFIG, ENV, ONE, TWO_RANKS, plan_120b, results, run, same_adapter

from oss_finetune.modeling.model import ModelLoadError, apply_lora, build_tiny, load_model, load_model_on_meta
from oss_finetune.training import sharding

LORA = {"r": 4, "alpha": 8, "target_experts": True}
SEED = 42


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """embedded:tiny as a checkpoint folder of bf16 safetensors."""
    path = tmp_path_factory.mktemp("tiny-bf16")
    build_tiny().to(torch.bfloat16).save_pretrained(str(path), safe_serialization=True)
    return path


def write_config(tmp_path: Path, folder: Path, name: str, **training) -> tuple[Path, Path]:
    out = tmp_path / name
    config = {
        **CONFIG,
        "model": {"name_or_path": str(folder)},
        "training": {**CONFIG["training"], "engine": "transformers", "output_dir": str(out), **training},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, out


@pytest.fixture(scope="module")
def alone(tmp_path_factory, folder) -> tuple[list[float], dict]:
    """One process loading the whole folder: the reference."""
    tmp = tmp_path_factory.mktemp("alone")
    path, out = write_config(tmp, folder, "alone")
    run(ONE, path)
    return results(out)[1:]


def test_two_ranks_reading_their_shares_train_as_one_process_loading_the_folder(tmp_path, folder, alone):
    losses_alone, adapter_alone = alone
    path, out = write_config(tmp_path, folder, "shares", sharding="fsdp")
    done = run(TWO_RANKS, path)
    assert "completed at step 3" in done.stdout
    assert "built on the meta device, no weight read yet" in done.stdout
    for rank in (0, 1):
        assert f"rank {rank}: read its share of 37 weights from 1 file, 49.4 MiB of 98.7 MiB (1/2 each" in done.stdout
    _, losses, adapter = results(out)
    assert losses == pytest.approx(losses_alone, rel=1e-5)
    same_adapter(adapter_alone, adapter)


def test_a_run_stopped_in_one_process_resumes_on_ranks_reading_their_shares(tmp_path, folder, alone):
    # The checkpoint's adapter goes in while it is still whole on the host, before sharding.
    losses_alone, adapter_alone = alone
    path, out = write_config(tmp_path, folder, "resumed", max_steps=1, save_steps=1)
    run(ONE, path)
    [run_folder] = [p for p in out.iterdir() if p.is_dir()]
    config = yaml.safe_load(path.read_text())
    config["training"].update(max_steps=3, sharding="fsdp")
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = run(TWO_RANKS, path, "--resume-from", str(run_folder / "checkpoints" / "step-1"))
    assert "rank 1: read its share" in done.stdout
    _, losses, adapter = results(out)
    assert losses == pytest.approx(losses_alone, rel=1e-5)
    same_adapter(adapter_alone, adapter)


# -- what each rank holds -------------------------------------------------------------------------------


def each_rank(folders: list[str], out: str) -> None:
    """Run by every rank (see __main__ below): load each folder's shares and set down what they hold,
    and how far the shares put together are from the whole model loaded in one process."""
    from oss_finetune.training.distributed import RanksTeam

    team = RanksTeam()
    for index, path in enumerate(folders):
        loaded = load_model_on_meta({"name_or_path": path, "device": "cpu"})
        built_on_meta = all(p.is_meta for p in loaded.model.parameters())
        model = apply_lora(loaded.model, LORA, seed=SEED)
        _, shares = sharding.load_shares(model, loaded.weights, team.device)
        with torch.no_grad():
            whole = {name: p.full_tensor() for name, p in model.named_parameters()}  # every rank gathers
        reference = apply_lora(load_model({"name_or_path": path, "device": "cpu"}).model, LORA, seed=SEED)
        expected = dict(reference.named_parameters())
        buffers = dict(reference.named_buffers())
        record = {
            "built_on_meta": built_on_meta,
            "local_bytes": shares.local_bytes,
            "whole_bytes": shares.whole_bytes,
            "largest_read": shares.largest_read,
            "largest_weight": max(p.numel() * p.element_size() for p in expected.values()),
            "same_names": sorted(whole) == sorted(expected),
            "largest_difference": max(float((whole[n] - expected[n].detach()).abs().max()) for n in whole),
            "buffers_equal": all(torch.equal(b, buffers[n]) for n, b in model.named_buffers()),
            "line": shares.line(),
        }
        Path(out, f"{index}-rank{team.rank}.json").write_text(json.dumps(record), encoding="utf-8")
    team.close()


@pytest.fixture(scope="module")
def mxfp4_folder(tmp_path_factory) -> Path:
    from test_mxfp4_checkpoint import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-mxfp4"))


def test_each_rank_reads_and_holds_half_and_the_halves_are_the_whole_model(tmp_path, folder, mxfp4_folder):
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), ENV.get("PYTHONPATH", "")])}
    command = [*TWO_RANKS[:-2], __file__, str(tmp_path), str(folder), str(mxfp4_folder)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for index in (0, 1):  # the bf16 folder, then the MXFP4 one
        ranks = [json.loads((tmp_path / f"{index}-rank{r}.json").read_text()) for r in (0, 1)]
        for record in ranks:
            assert record["built_on_meta"], record["line"]
            assert record["same_names"] and record["buffers_equal"]
            assert record["largest_difference"] == 0.0
            # Half of every weight, and no read larger than half of the largest one.
            assert record["local_bytes"] == pytest.approx(record["whole_bytes"] / 2, rel=0.01)
            assert record["largest_read"] <= record["largest_weight"] / 2 + 4 * 64  # a row more where odd
        assert sum(r["local_bytes"] for r in ranks) == ranks[0]["whole_bytes"]


# -- what is refused, and when shares are read ---------------------------------------------------------


def test_sharded_loading_refuses_what_it_cannot_read_and_names_the_field(folder):
    with pytest.raises(ModelLoadError, match="built from a seed and has no checkpoint files"):
        load_model_on_meta({"name_or_path": "embedded:tiny"})
    with pytest.raises(ModelLoadError, match="model.load_in_4bit: sharded loading reads bf16 weights"):
        load_model_on_meta({"name_or_path": str(folder), "load_in_4bit": True})
    with pytest.raises(ModelLoadError, match="model.mxfp4_experts: sharded loading expands the experts"):
        load_model_on_meta({"name_or_path": str(folder), "mxfp4_experts": True})
    with pytest.raises(ModelLoadError, match="the model folder /nowhere/at/all does not exist"):
        load_model_on_meta({"name_or_path": "/nowhere/at/all"})


def test_shares_are_read_where_fsdp_is_chosen_for_a_checkpoint(folder):
    files = {"model": {"name_or_path": str(folder)}, "training": {"sharding": "fsdp"}}
    reads, line = sharding.reads_shares(files, 2)
    assert reads and "fsdp, the base and the adapter sharded over 2 ranks" in line
    assert sharding.reads_shares(files, 1) == (False, "")
    assert sharding.reads_shares({**files, "training": {"sharding": "replicate"}}, 2) == (False, "")
    # Built from a seed, the embedded models are built whole on every rank and sharded by the Trainer.
    assert sharding.reads_shares({**files, "model": {"name_or_path": "embedded:tiny"}}, 2) == (False, "")
    if not torch.cuda.is_available():  # 'auto' on CPUs replicates, as the Trainer decides
        assert sharding.reads_shares({**files, "training": {"sharding": "auto"}}, 2) == (False, "")


def test_the_plan_counts_a_share_of_host_memory_for_loading_a_checkpoint():
    # gpt-oss-120b on 4 ranks: the adapter whole and one slice on each host, not 217 GiB per rank.
    replica, sharded = plan_120b("replicate", 4), plan_120b("fsdp", 4)
    assert sharded.load_host_bytes < replica.weights_bytes / 40
    assert sharded.load_peak_bytes == pytest.approx(replica.weights_bytes / 4, rel=0.01)
    assert any("reads only its share of the checkpoint" in note for note in sharded.notes)
    assert replica.load_host_bytes is None


if __name__ == "__main__":
    each_rank(sys.argv[2:], sys.argv[1])
