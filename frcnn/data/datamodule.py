"""`DetectionDataModule`: train/val loaders of `(images, targets)` from any `DataSource`.

Built by `hydra.utils.instantiate(cfg.data)` from `conf/data/{coco,shapes,coco_folder,voc}.yaml`,
whose `source:` node names the source class (`frcnn/data/sources/`). Works outside a Trainer:
`dm = DetectionDataModule(Shapes, path=...); dm.setup("fit"); dm.train_dataloader()`. See
`frcnn.data.stream` for the sample contract and `frcnn.data.partition` for how rows are dealt
to ranks × workers.

Layout: the loaders take this process's rank and world size from the Trainer the data module is
attached to (else from `torch.distributed`, else 0 of 1) and hand them to the stream before any
DataLoader worker starts.

Epochs: the training loader's `sampler.set_epoch` forwards to the stream, and Lightning's fit
loop calls it at every epoch start, so each epoch takes its own rows with no help from the app.
Outside Lightning, call `dm.set_epoch(epoch)` before iterating. The training loader has a length,
the same on every rank.

Resume: `dm.state_dict()` holds the training loader's position — every rank's, gathered (a
collective: Lightning builds checkpoints on every rank) — and the revisions of the data read.
Lightning restores the data module before it builds the loaders, and `train_dataloader()` hands
each rank its own position, so every rank continues with its very next batch. (Lightning also
keeps the loader's state in its loop state, but restores it only when the loader is built after
the checkpoint is loaded, which `configure_optimizers` asking for the epoch length prevents.)
Outside Lightning: `state = loader.state_dict()`, then `dm.train_dataloader().load_state_dict(state)`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from typing import Any

import hydra
import lightning as L

from frcnn.data.decode import DEFAULT_MAX_PIXELS
from frcnn.data.loader import StreamLoader
from frcnn.data.source import DataSource, DataSourceError
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import DetectionTransform, ResizeMode, build_resize, inference_min_size
from frcnn.distributed import rank_and_world_size
from frcnn.evaluation.ground_truth import coco_ground_truth_from_rows

log = logging.getLogger(__name__)


class DetectionDataModule(L.LightningDataModule):
    """Detection data from a `DataSource`, read as Hub-schema rows by `DetectionStream`.

    Args:
        source: the source's class or a factory of it (a Hydra `_partial_: true` node, e.g.
            `frcnn.data.sources.hub.HubDataset`), called with `source_options`; or a source
            built already (then with no `source_options`).
        source_options: the data config's keys this module does not take, the source's own
            (`path`, `revision`, `shapes`, ...): at the top of `data` so that `data.path=...`
            reads the same for every source, and a checkpoint's `data.path` can be overridden.
        train_split, val_split: the splits' names; the training split declares the categories.
        multiprocessing_context: how DataLoader workers start (`fork`, `spawn`, `forkserver`;
            None: Python's default). The split across workers is the same for all.
        resize: `keep_ratio` (`min_size`/`max_size`), `square` (`square_size`) or `none`.
            `min_size` may be a list: training draws one per image (multi-scale training, seeded
            like the flips), validation uses the last.
        hflip_prob: horizontal-flip probability for training.
        shuffle_block, seed: training shuffle (units order + blocks of rows), new each epoch.
        skip_empty_train: train only on images with at least one valid box.
        val_limit: only the first `val_limit` validation images (None: all).
        max_skip_fraction: the share of a split's rows that may be skipped before the run stops.
        max_pixels: images above this many pixels are skipped, read from the header (never decoded).
        aspect_ratio_grouping: batch landscape and portrait training images apart (less padding).

    Attributes:
        source: the built `DataSource`.
        num_classes: classes including background (81 for COCO and shapes).
        class_names: `num_classes` names, index 0 = "background".
        label_to_category_id: label → the dataset's category id, for results files (COCO's own
            ids, 1..90 with gaps, for the Hub COCO and shapes; a folder's own ids). Index 0,
            background, maps to 0.
    """

    def __init__(
        self,
        source: DataSource | Callable[..., DataSource],
        train_split: str = "train",
        val_split: str = "val",
        batch_size: int = 2,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        multiprocessing_context: str | None = None,
        resize: ResizeMode = "keep_ratio",
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        square_size: int = 400,
        hflip_prob: float = 0.5,
        shuffle_block: int = 1000,
        seed: int = 0,
        skip_empty_train: bool = True,
        val_limit: int | None = None,
        max_skip_fraction: float = 0.01,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        aspect_ratio_grouping: bool = False,
        **source_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(source, DataSource) and source_options:
            raise TypeError(f"data.{next(iter(source_options))} is no data module option and the source is built already")
        self.source = source if isinstance(source, DataSource) else _call_source(source, source_options)
        self.train_split, self.val_split = train_split, val_split
        self.batch_size = batch_size
        self.loader_kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
        if num_workers > 0:
            self.loader_kwargs |= {
                "persistent_workers": persistent_workers,
                "prefetch_factor": prefetch_factor,
                "multiprocessing_context": multiprocessing_context,
            }
        self.resize = build_resize(resize, inference_min_size(min_size), max_size, square_size)
        train_sizes = [min_size] if isinstance(min_size, int) or resize != "keep_ratio" else list(min_size)
        self.train_resizes = [build_resize(resize, size, max_size, square_size) for size in train_sizes]
        self.hflip_prob = hflip_prob
        self.shuffle_block, self.seed = shuffle_block, seed
        self.skip_empty_train = skip_empty_train
        self.val_limit = val_limit
        self.max_skip_fraction = max_skip_fraction
        self.max_pixels = max_pixels
        self.aspect_ratio_grouping = aspect_ratio_grouping
        names, category_ids = self.source.categories(train_split)
        self.class_names = ["background", *names]
        self.label_to_category_id = [0, *category_ids]
        self.num_classes = len(self.class_names)
        self.train_dataset: DetectionStream | None = None
        self.val_dataset: DetectionStream | None = None
        self._train_loader: StreamLoader | None = None
        self._train_position: dict[str, Any] | None = None
        self._val_ground_truth: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        """Make the source's data once (Lightning calls this on one process per node)."""
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Open the splits and check their annotations (no image is read here)."""
        self.source.prepare()  # a no-op once made; safe across ranks
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self._stream(self.train_split, train=True)
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self._stream(self.val_split, train=False)

    def _stream(self, split: str, train: bool) -> DetectionStream:
        return DetectionStream(
            self.source.open(split),
            DetectionTransform(self.train_resizes if train else self.resize),
            num_classes=self.num_classes,
            train=train,
            batch_size=self.batch_size,
            shuffle_block=self.shuffle_block,
            seed=self.seed,
            hflip_prob=self.hflip_prob if train else 0.0,
            skip_empty=self.skip_empty_train,
            limit=None if train else self.val_limit,
            max_pixels=self.max_pixels,
            aspect_ratio_grouping=train and self.aspect_ratio_grouping,
        )

    def _loader(self, stream: DetectionStream | None, stage: str) -> StreamLoader:
        if stream is None:
            raise RuntimeError(f"call setup({stage!r}) before the {stage} dataloader")
        rank, world_size = rank_and_world_size(self.trainer)
        return StreamLoader(stream, self.batch_size, rank, world_size, **self.loader_kwargs)

    def train_dataloader(self) -> StreamLoader:
        """Batches `(images, targets)` of this rank's training share; `len()` is the same on every rank."""
        self._train_loader = self._loader(self.train_dataset, "fit")
        if self._train_position is not None:
            self._train_loader.load_state_dict(self._train_position)
            self._train_position = None
        return self._train_loader

    def val_dataloader(self) -> StreamLoader:
        """Batches `(images, targets)` of this rank's validation share: fixed order, empty images kept."""
        return self._loader(self.val_dataset, "validate")

    def val_ground_truth(self) -> dict[str, Any]:
        """The COCO instances dict of the val split (the first `val_limit` images): its stored
        boxes, areas, crowds and ids, read without decoding an image; built once, then cached."""
        if self._val_ground_truth is None:
            if self.val_dataset is None:
                self.setup("validate")
            rows = self.val_dataset.source.annotations()  # the stream's own rows, no image bytes
            self._val_ground_truth = coco_ground_truth_from_rows(
                islice(rows, self.val_limit), self.class_names[1:], self.label_to_category_id[1:]
            )
        return self._val_ground_truth

    def set_epoch(self, epoch: int) -> None:
        """Select `epoch`'s training rows (Lightning does this by itself; see the module doc)."""
        if self.train_dataset is not None:
            self.train_dataset.set_epoch(epoch)

    def streams(self) -> dict[str, DetectionStream]:
        """The open streams by split name."""
        named = {self.train_split: self.train_dataset, self.val_split: self.val_dataset}
        return {split: stream for split, stream in named.items() if stream is not None}

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position on every rank, and the revisions of the splits read
        (a Hub commit, or a fingerprint of the local files)."""
        state: dict[str, Any] = {"revisions": {split: stream.source.revision for split, stream in self.streams().items()}}
        if self._train_loader is not None:
            state["train_loader"] = self._train_loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the next `train_dataloader()` continues where `state_dict` was taken; warn in
        one line when the data read now is another revision (Lightning restores the data module
        after `setup`, so the splits are open by now)."""
        self._train_position = state_dict.get("train_loader")
        saved = state_dict.get("revisions", {})
        for split, stream in self.streams().items():
            if split in saved and saved[split] != stream.source.revision:
                log.warning(
                    "data %s: reading revision %s, the checkpoint was trained on %s (pin a Hub dataset with data.revision=)",
                    split, stream.source.revision, saved[split],
                )  # fmt: skip


def build_source(data: Mapping[str, Any]) -> DataSource:
    """The source of a data config (`cfg.data`) alone, as `DetectionDataModule` builds it, without
    reading its categories or opening a split."""
    module_keys = inspect.signature(DetectionDataModule.__init__).parameters
    options = {key: value for key, value in data.items() if key not in module_keys and not key.startswith("_")}
    return _call_source(hydra.utils.instantiate(data["source"], _convert_="all"), options)


def _call_source(factory: Callable[..., DataSource], options: Mapping[str, Any]) -> DataSource:
    """`factory(**options)`; keys it does not take (or lacks) are a one-line `DataSourceError`."""
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as error:
        name = getattr(factory, "func", factory).__name__
        raise DataSourceError(
            f"data: {error}: the keys of data that the data module does not take go to its source {name}, "
            f"which takes {', '.join(signature.parameters)}"
        ) from None
    return factory(**options)
