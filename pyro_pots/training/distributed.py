"""
Data-parallel training on PyTorch's own engine, for ``torchrun --nproc_per_node=N -m
pyro_pots fit ...``.

Every rank holds the whole model and the whole dataset; SVI batches are sharded by a
:class:`~torch.utils.data.DistributedSampler` and gradients are averaged by
:class:`~torch.nn.parallel.DistributedDataParallel` wrapped around Pyro's ELBO module
(``Trace_ELBO()(model, guide)`` is an :class:`~torch.nn.Module`). The curriculum stays
rank-identical: the numbers it judges are reduced across ranks, the costly stage-end scores
and the split's targets are computed on rank 0 and broadcast, and the parameters are
broadcast from rank 0 after every split or restore. Only rank 0 writes the run directory.

Under torchrun (``WORLD_SIZE`` > 1 in the environment) :func:`~pyro_pots.fit` joins the
process group itself: ``gloo`` on CPU, ``nccl`` on CUDA, each rank on ``cuda:LOCAL_RANK``.
"""

import hashlib
import os
from typing import Any, Callable, List, Optional, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    """Processes in the group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the group (0 when not distributed)."""
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    """Whether this process writes files and shows progress (rank 0, or not distributed)."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (``gloo`` on CPU, ``nccl`` on CUDA);
    whether this call created it (and so should destroy it at the end)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each rank takes its own GPU: ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (in place, and returned); the tensor itself when not distributed."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank."""
    if world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result sent to every rank (any picklable value). An
    exception on rank 0 is raised on every rank, so no rank is left waiting."""
    if world_size() == 1:
        return compute()
    box: List[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", compute())
        except Exception as error:  # re-raised everywhere below
            box[0] = ("error", error)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def broadcast_state(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers bit-identical to rank 0's."""
    if world_size() > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def state_digests(module: torch.nn.Module) -> List[str]:
    """Every rank's SHA-256 of its parameters and buffers, in rank order (equal digests:
    bit-identical models)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digests: List[Any] = [None] * world_size()
    if world_size() == 1:
        return [digest.hexdigest()]
    dist.all_gather_object(digests, digest.hexdigest())
    return digests


def shard(rows: int, generator_seed: int, epoch: int) -> torch.Tensor:
    """This rank's shuffled row indices for one epoch (a ``DistributedSampler``: every rank
    gets the same number of rows, so every rank takes the same number of steps)."""
    sampler = torch.utils.data.DistributedSampler(
        range(rows), num_replicas=world_size(), rank=rank(), shuffle=True, seed=generator_seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def strided(x: torch.Tensor) -> torch.Tensor:
    """This rank's share of ``x`` for evaluation (every ``world_size``-th row)."""
    return x[rank() :: world_size()]


def wrap(module: torch.nn.Module, device: torch.device) -> Optional[torch.nn.Module]:
    """:class:`DistributedDataParallel` over ``module`` when distributed, else None. Closed
    pots' parameters get no gradient, hence ``find_unused_parameters``."""
    if world_size() == 1:
        return None
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=True
    )
