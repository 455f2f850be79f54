"""`StreamLoader`: a resumable DataLoader over a `DetectionStream` that Lightning can re-seed each epoch."""

import warnings
from typing import Any, Iterator

import torch
from torch.utils.data.sampler import Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from frcnn.data.collate import collate_detection
from frcnn.data.stream import DataLayoutError, DetectionStream
from frcnn.distributed import gather_objects

# torchdata's StatefulDataLoader calls an API torch deprecated; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*'set_vital' is deprecated.*")
# Lightning warns that an IterableDataset's length may be wrong with workers; ours is exact by construction.
warnings.filterwarnings("ignore", message=".*Your `IterableDataset` has `__len__` defined.*")


class _EpochSetter(Sampler[None]):
    """Stands in for an IterableDataset's sampler so that Lightning's fit loop, which calls
    `loader.sampler.set_epoch(epoch)` at every epoch start, reaches `DetectionStream.set_epoch`."""

    def __init__(self, stream: DetectionStream) -> None:
        self.stream = stream

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class StreamLoader(StatefulDataLoader):
    """`torchdata.StatefulDataLoader` of `(images, targets)` batches from a `DetectionStream`.

    The stream's layout (rank, world size, workers) is set here, in the main process, before
    any worker starts. A training loader has a length — the same number of batches on every
    rank — so Lightning ends every rank's epoch at the same step; a validation loader has none.

    `state_dict()` is a collective under DDP: it gathers every rank's position
    (`{"ranks": [...]}`), and `load_state_dict()` restores this rank's own, so one checkpoint
    written by rank 0 resumes every rank exactly. (Lightning does not prefetch from a loader
    that has a length, so the position is that of the last batch trained on.)
    """

    def __init__(self, stream: DetectionStream, batch_size: int, rank: int = 0, world_size: int = 1, **loader_kwargs) -> None:
        stream.set_layout(rank, world_size, loader_kwargs.get("num_workers", 0))
        # A generator of its own: each new iterator draws its workers' base seed from it, not from
        # torch's global generator, which `RNGState` saves for the model's samplers. (The stream's
        # randomness is keyed by seed, epoch and image id.) Otherwise a checkpoint taken at
        # validation would miss the draw of the next epoch's iterator and resume with other samples.
        loader_kwargs.setdefault("generator", torch.Generator())
        super().__init__(stream, batch_size=batch_size, collate_fn=collate_detection, **loader_kwargs)
        # DataLoader forbids setting `sampler` after __init__ and rejects one for IterableDatasets.
        object.__setattr__(self, "sampler", _EpochSetter(stream))
        self.stream = stream

    def __len__(self) -> int:
        return self.stream.num_batches()

    def state_dict(self) -> dict[str, Any]:
        """Every rank's position, in rank order (a collective under DDP)."""
        return {"ranks": gather_objects(super().state_dict())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume this rank from its own entry of `state_dict()`."""
        ranks = state_dict["ranks"]
        if len(ranks) != self.stream.world_size:
            raise DataLayoutError(
                f"the checkpoint's data position is for {len(ranks)} rank(s), this run has {self.stream.world_size}: "
                "resume with the same trainer.devices x trainer.num_nodes, or start a new run from its weights"
            )
        state = ranks[self.stream.rank]
        saved_workers = len(state["_snapshot"]["_worker_snapshots"]) if "_snapshot" in state else 0
        if saved_workers != self.stream.num_workers:
            raise DataLayoutError(
                f"the checkpoint's data position is for data.num_workers={saved_workers}, this run has "
                f"{self.stream.num_workers}: resume with data.num_workers={saved_workers}, or start a new run from its weights"
            )
        super().load_state_dict(state)
