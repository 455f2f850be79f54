"""`StreamLoader`: a resumable DataLoader over a `DetectionStream` that Lightning can re-seed each epoch."""

from typing import Iterator

from torch.utils.data.sampler import Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from frcnn.data.collate import collate_detection
from frcnn.data.stream import DetectionStream


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

    `state_dict()` after k batches and `load_state_dict()` on a fresh loader resume with batch
    k + 1, for any `num_workers` (each worker's stream copy reports its own position).
    """

    def __init__(self, stream: DetectionStream, batch_size: int, **loader_kwargs) -> None:
        super().__init__(stream, batch_size=batch_size, collate_fn=collate_detection, **loader_kwargs)
        # DataLoader forbids setting `sampler` after __init__ and rejects one for IterableDatasets.
        object.__setattr__(self, "sampler", _EpochSetter(stream))
