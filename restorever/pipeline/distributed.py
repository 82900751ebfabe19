"""Multi-process runs on ``torchrun`` (torch.distributed): each rank takes a deterministic shard of the work list,
writes its results to the shared cache, and rank 0 merges (reads everything back from the cache) and scores.

Because every cache entry depends only on its item (never on the batch, rank or process count), a run on N processes
gives exactly the numbers of a single-process run.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Rank and world size from the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device_type: str) -> None:
    """Join the process group (nccl on CUDA, gloo otherwise) once."""
    if not info.enabled:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        logger.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)


def shard(items: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's share: every ``world_size``-th item starting at ``rank`` (deterministic, balanced)."""
    return list(items[info.rank::info.world_size]) if info.enabled else list(items)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def sum_over_ranks(info: DistInfo, values: dict[str, float]) -> dict[str, float]:
    """``values`` summed key by key over all ranks (a collective: every rank must call it with the same keys);
    a copy of ``values`` when not distributed. Used for stage seconds and counts, so a run's record covers the work
    of every rank."""
    if not info.enabled:
        return dict(values)
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return dict(zip(keys, total.cpu().tolist()))


def finish(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
