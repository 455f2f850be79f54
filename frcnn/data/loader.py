"""`StreamLoader`: a resumable DataLoader over a `DetectionStream` that Lightning can re-seed each epoch."""

import warnings
from collections import deque
from typing import Any, Iterator

from torch.utils.data.sampler import Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from frcnn.data.collate import collate_detection
from frcnn.data.stream import DetectionStream

# torchdata's StatefulDataLoader calls an API torch deprecated; nothing a user can act on.
warnings.filterwarnings("ignore", message=".*'set_vital' is deprecated.*")


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

    `state_dict()` after k consumed batches and `load_state_dict()` on a fresh loader resume with
    batch k + 1, for any `num_workers` (each worker's stream copy reports its own position).
    `prefetch_lag`: batches the consumer holds ahead of the one it has used; Lightning's training
    loop prefetches 1, so the position saved in its checkpoints must be the one before it.
    """

    def __init__(self, stream: DetectionStream, batch_size: int, prefetch_lag: int = 0, **loader_kwargs) -> None:
        super().__init__(stream, batch_size=batch_size, collate_fn=collate_detection, **loader_kwargs)
        # DataLoader forbids setting `sampler` after __init__ and rejects one for IterableDatasets.
        object.__setattr__(self, "sampler", _EpochSetter(stream))
        self.prefetch_lag = prefetch_lag
        self._snapshots: deque[dict[str, Any]] = deque(maxlen=prefetch_lag + 1)
        self._exhausted = False

    def __iter__(self) -> Iterator:
        iterator = super().__iter__()
        self._exhausted = False
        self._snapshots.clear()
        self._snapshots.append(super().state_dict())
        for batch in iterator:
            self._snapshots.append(super().state_dict())
            yield batch
        self._exhausted = True

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch the consumer has used (not merely prefetched)."""
        if self._exhausted or not self._snapshots:
            return super().state_dict()
        return self._snapshots[0] if len(self._snapshots) > self.prefetch_lag else self._snapshots[-1]
