"""The frozen base sharded over the ranks torchrun started (``training.sharding: fsdp``), for a model one
GPU cannot hold: gpt-oss-120b with LoRA on the experts is about 217 GiB in bf16.

Each decoder layer, and then the whole model (the embedding, the final norm and the output layer), is
handed to FSDP2 (``torch.distributed.fsdp.fully_shard``): every parameter, the adapter's included,
becomes a DTensor holding this rank's slice of dimension 0. A layer's weights are gathered just before
it computes and freed after, in the forward and again in the backward, and the adapter's gradients are
reduce-scattered as each layer's backward ends, so the Trainer sums no gradients itself. Every rank
must therefore make the same passes in the same order: the Trainer pads a rank with fewer micro-batches
of a step with passes that weigh nothing (``idle_example``).

The fast engine walks a model's modules itself instead of calling them, so FSDP's hooks would not run:
each layer gets the engine's ``engine.SHARDED_LAYER`` method, and a micro-batch's loss is computed
inside the whole model's ``ROOT_ENTRY`` method, both registered with FSDP as forward methods.

Loading (``load_shares``): a model of checkpoint files is built on the meta device on every rank
(``model.load_model_on_meta``), its adapter drawn on the host as in one process, sharded, and only
then materialized: each rank allocates its slices alone and reads just those rows from the files, so
no rank ever holds the whole base. The embedded models, built from a seed, are built whole on every
rank and sharded by the Trainer.

What is written (the adapter, the optimizer's moments) is gathered into whole tensors first, in the
layout of a one-process run, so a checkpoint resumes on any number of ranks, sharded or not.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..core.data import Example
from ..modeling import engine

ROOT_ENTRY = "sharded_micro_batch"

CHOICES = ("replicate", "fsdp")


class ShardingError(ValueError):
    """training.sharding cannot be honoured as asked; the message names the fix."""


def choose(
    wanted: str, *, ranks: int, torchrun: bool, replica_fits: Callable[[], tuple[bool | None, str]]
) -> tuple[str, str]:
    """'replicate' or 'fsdp' for ``training.sharding`` and the one line that says what was chosen and why.

    ``replica_fits`` is asked only for 'auto' on several ranks: whether the memory planner says a whole
    replica fits one GPU (None where it cannot say, as on a CPU) and the plan's figure in words.
    """
    if wanted == "fsdp" and ranks > 1 and not torchrun:
        raise ShardingError(
            "training.sharding: fsdp shards over ranks started by torchrun (`torchrun --nproc-per-node N -m "
            "oss_finetune train CONFIG`); the notebook's GPU team holds a replica on each GPU: use "
            "sharding 'replicate' or 'auto' there"
        )
    if ranks <= 1:
        if wanted == "fsdp":
            return "replicate", "sharding: one process holds the whole model, so nothing is sharded"
        return "replicate", ""
    if wanted == "replicate" or not torchrun:
        return "replicate", ""
    if wanted == "fsdp":
        return "fsdp", f"sharding: fsdp, the base and the adapter sharded over {ranks} ranks (as asked)"
    fits, words = replica_fits()
    if fits is False:
        return "fsdp", f"sharding: fsdp over {ranks} ranks, since a whole replica does not fit one GPU ({words})"
    return "replicate", ""


def replica_fits(model, run_config: dict, device: torch.device) -> tuple[bool | None, str]:
    """Whether the memory planner says a whole replica of the loaded ``model`` trains on one GPU of this
    kind, and its verdict in words; (None, why) where it cannot say."""
    from ..modeling.model import unwrap
    from . import memory

    config = {**run_config, "training": {**run_config.get("training", {}), "sharding": "replicate"}}
    if device.type != "cuda":
        return None, "no GPU to plan for"
    try:
        plan = memory.plan_memory(
            config,
            architecture=unwrap(model).config,
            device="cuda",
            weights_bytes=memory.loaded_weight_bytes(model) if next(model.parameters()).is_cuda else None,
            suggest=False,
        )
    except memory.PlanError as error:
        return None, str(error)
    return plan.fits, plan.verdict()


def idle_example(pad_token_id: int) -> Example:
    """One padding token with nothing trained: a pass that gathers and reduces what a real one does,
    and adds zero to every gradient."""
    return Example([pad_token_id], [False])


def _mesh(device: torch.device):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (torch.distributed.get_world_size(),))


def _base_dtype(model) -> torch.dtype:
    frozen = [p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()]
    return max(set(frozen), key=frozen.count) if frozen else torch.float32


class Sharded:
    """A peft model whose parameters FSDP2 has sharded over every rank of the default process group.

    ``device`` is where the shards live (the rank's GPU under NCCL, the CPU under gloo); a model loaded
    on the host moves there shard by shard.
    """

    def __init__(self, model, device: torch.device):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        self.model = model
        self.world = torch.distributed.get_world_size()
        self.mesh = _mesh(device)
        self.compute_dtype = _base_dtype(model)
        # The adapter is float32 over a bf16 base; FSDP gathers one dtype per layer, so it computes in the
        # base's (as the fast engine already does), and gradients are reduced and kept in float32.
        policy = MixedPrecisionPolicy(param_dtype=self.compute_dtype, reduce_dtype=torch.float32)
        layers = list(engine._causal_lm(model).model.layers)
        for layer in layers:
            fully_shard(layer, mesh=self.mesh, mp_policy=policy)
            setattr(layer, engine.SHARDED_LAYER, types.MethodType(engine.run_layer, layer))
            register_fsdp_forward_method(layer, engine.SHARDED_LAYER)
        fully_shard(model, mesh=self.mesh, mp_policy=policy)
        setattr(model, ROOT_ENTRY, types.MethodType(lambda self, compute: compute(), model))
        register_fsdp_forward_method(model, ROOT_ENTRY)
        # The loss is already divided by the whole step's trained tokens: the ranks' gradients add up
        # (a plain sum, which gloo can do too, rather than NCCL's pre-multiplied one).
        for module in [*layers, model]:
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
        self.layers = len(layers)

    def words(self) -> str:
        return (
            f"fsdp: {self.layers} layers and the rest sharded over {self.world} ranks, computing in "
            f"{str(self.compute_dtype).removeprefix('torch.')}"
        )

    def micro_batch(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One micro-batch's loss, computed with the model's own (non-layer) weights gathered."""
        return getattr(self.model, ROOT_ENTRY)(compute)

    # -- the step ------------------------------------------------------------------------------------
    @staticmethod
    def clip(params: list[torch.nn.Parameter], max_norm: float | None) -> float:
        """The whole adapter's gradient norm over every rank's shards, and the gradients scaled as
        ``clip_grad_norm_`` scales them in one process."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return 0.0
        total = torch.nn.utils.get_total_norm(grads, foreach=True)
        total = _whole(total)
        norm = float(total)
        if max_norm is not None:
            scale = min(max_norm / (norm + 1e-6), 1.0)
            with torch.no_grad():
                for grad in grads:
                    grad.mul_(scale)
        return norm

    # -- what is written -----------------------------------------------------------------------------
    def adapter_state(self, leader: bool) -> dict[str, torch.Tensor]:
        """The trained parameters as whole tensors on the host, by their names in the model (every rank
        must call it: gathering is collective); only the leader keeps them."""
        state = {}
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                whole = _whole(param.detach())
                if leader:
                    state[name] = whole.cpu()
        return state

    def optimizer_state(self, optimizer, leader: bool) -> dict[str, Any] | None:
        """``optimizer.state_dict()`` with every sharded moment gathered: the form a one-process run
        writes, so it loads on any number of ranks. Collective; the leader gets it, the others None."""
        saved = optimizer.state_dict()
        state = {}
        for index, values in saved["state"].items():
            state[index] = {key: _whole(value).cpu() if _is_sharded(value) else value for key, value in values.items()}
        if not leader:
            return None
        return {"state": state, "param_groups": saved["param_groups"]}

    def load_optimizer_state(self, optimizer, saved: dict[str, Any]) -> None:
        """A whole optimizer state (from a run on any number of ranks) cut to this rank's shards."""
        from torch.distributed.tensor import distribute_tensor

        params = [p for group in optimizer.param_groups for p in group["params"]]
        state = {}
        for index, values in saved["state"].items():
            param = params[int(index)]
            cut = {}
            for key, value in values.items():
                if torch.is_tensor(value) and _is_sharded(param) and tuple(value.shape) == tuple(param.shape):
                    value = distribute_tensor(
                        value.to(device=param.device, dtype=param.dtype), param.device_mesh, param.placements
                    )
                cut[key] = value
            state[index] = cut
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _is_sharded(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _whole(tensor: Any) -> torch.Tensor:
    return tensor.full_tensor() if _is_sharded(tensor) else tensor


def save_adapter(model, folder, state: dict[str, torch.Tensor]) -> None:
    """The adapter folder a one-process run writes (adapter_config.json, adapter_model.safetensors),
    from gathered whole tensors."""
    model.save_pretrained(str(folder), state_dict=state, safe_serialization=True)


# -- loading each rank's share -------------------------------------------------------------------------


def reads_shares(run_config: dict, ranks: int) -> tuple[bool, str]:
    """Whether the ranks torchrun started should each read only their share of the model's files:
    training.sharding chooses fsdp and the model is a checkpoint, not an embedded one. For 'auto' the
    memory planner is asked, before anything is loaded, whether a whole replica fits one GPU. The
    second value is the sharding line, as ``choose`` says it."""
    from ..modeling import sources

    name = (run_config.get("model") or {}).get("name_or_path")
    if ranks <= 1 or not name or sources.is_embedded(name):
        return False, ""

    def planned() -> tuple[bool | None, str]:
        from . import memory

        if not torch.cuda.is_available():
            return None, "no GPU to plan for"
        training = {**(run_config.get("training") or {}), "sharding": "replicate"}
        try:
            plan = memory.plan_memory({**run_config, "training": training}, device="cuda", ranks=ranks, suggest=False)
        except memory.PlanError as error:
            return None, str(error)
        return plan.fits, plan.verdict()

    wanted = (run_config.get("training") or {}).get("sharding", "auto")
    chosen, line = choose(wanted, ranks=ranks, torchrun=True, replica_fits=planned)
    return chosen == "fsdp", line


@dataclass
class Shares:
    """What one rank read of the checkpoint: its slices, against the whole model."""

    rank: int
    world: int
    local_bytes: int  # this rank's slices of the base and the adapter, as held after loading
    whole_bytes: int  # the same parameters whole: what a rank loading the whole model would hold
    weights: int
    files: int
    largest_read: int  # the largest single slice read from the files
    built_on_meta: bool  # every base parameter was on the meta device until this rank's slices were made

    def line(self) -> str:
        return (
            f"rank {self.rank}: read its share of {self.weights} weights from {self.files} "
            f"file{'' if self.files == 1 else 's'}, {_size(self.local_bytes)} of {_size(self.whole_bytes)} "
            f"(1/{self.world} each; the model was built on the meta device, never whole)"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def load_shares(model, weights, device: torch.device) -> tuple[Sharded, Shares]:
    """Shard ``model`` (a peft model over a base on the meta device, its adapter on the host) over every
    rank, then make and fill this rank's slices: the base's rows from ``weights`` (a CheckpointSlices),
    the adapter's from its host copy, whose values (drawn from the run's seed, or put in from --adapter
    or a checkpoint) are those of a one-process run. Collective: every rank calls it."""
    from ..modeling.model import ModelLoadError, unwrap

    base = unwrap(model)
    stored_name = {id(p): name for name, p in _base_parameters(base)}
    adapter = {name: p.detach() for name, p in model.named_parameters() if not p.is_meta}
    keys = {name: stored_name[id(p)] for name, p in model.named_parameters() if p.is_meta}
    missing = [key for key in keys.values() if not weights.has(key)]
    if missing:
        raise ModelLoadError(f"{weights.folder} lacks {len(missing)} weight(s) of the model, the first {missing[0]}")
    for name, key in keys.items():
        shape = weights.shape(key)
        expected = tuple(model.get_parameter(name).shape)
        if shape != expected:
            raise ModelLoadError(f"{key} in {weights.folder} has shape {shape}; config.json makes it {expected}")
    buffers = [name for name, b in model.named_buffers() if b.is_meta]
    built_on_meta = all(p.is_meta for _, p in _base_parameters(base))
    if not keys or not built_on_meta:
        raise ValueError("load_shares fills a base built on the meta device (model.load_model_on_meta)")

    sharded = Sharded(model, device)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model.to_empty(device=device)
    local_bytes = whole_bytes = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            local = param.to_local() if _is_sharded(param) else param
            start, stop = _rows(param.shape[0], rank, world) if _is_sharded(param) else (0, param.shape[0])
            if local.shape[0] != stop - start:
                raise RuntimeError(f"{name}: FSDP gave this rank {local.shape[0]} rows, not rows {start}:{stop}")
            if name in keys:
                local.copy_(weights.read(keys[name], start, stop, local.dtype))
            else:
                local.copy_(adapter[name][start:stop])
            local_bytes += local.numel() * local.element_size()
            whole_bytes += param.numel() * param.element_size()
    del adapter
    _recompute_buffers(base, buffers, device)
    return sharded, Shares(
        rank, world, local_bytes, whole_bytes, len(keys), len(weights.files), weights.largest_read, built_on_meta
    )


def _base_parameters(base):
    """The base's parameters by their names in its checkpoint (peft's wrappers leave them in place)."""
    for name, param in base.named_parameters():
        if not param.requires_grad:
            yield name.replace(".base_layer", ""), param


def _rows(length: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's rows of a first dimension of ``length``, as FSDP2 cuts it (``torch.chunk``)."""
    chunk = -(-length // world)
    return min(rank * chunk, length), min((rank + 1) * chunk, length)


def _recompute_buffers(base, names: list[str], device: torch.device) -> None:
    """The buffers computed from the config rather than stored (the rotary frequencies), remade where the
    model now is: ``to_empty`` left them uninitialized."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    inner = base.model
    with torch.device(device):
        inner.rotary_emb = GptOssRotaryEmbedding(inner.config)
    left = [name for name in names if "rotary_emb." not in name]
    if left:
        raise RuntimeError(f"{left[0]} is a buffer of the model that sharded loading does not know how to compute")
