"""`DetectionDataModule`: train/val loaders of `(images, targets)` for the Hub COCO, `shapes` and COCO folders.

Built by `hydra.utils.instantiate(cfg.data)` from `conf/data/{coco,shapes,coco_folder}.yaml`.
Works outside a Trainer: `dm.setup("fit"); dm.train_dataloader()`. See `frcnn.data.stream` for
the sample contract and the exactly-once split across workers and ranks.

Epochs: the training loader's `sampler.set_epoch` forwards to the stream, and Lightning's fit
loop calls it at every epoch start, so each epoch reshuffles with no help from the app. Outside
Lightning, call `dm.set_epoch(epoch)` before iterating.

Resume: `dm.state_dict()` returns the training loader's position (the batches it has yielded)
and Lightning saves it in checkpoints; `dm.load_state_dict(state)` before `train_dataloader()`
(Lightning restores the datamodule before it builds the loaders) makes the next training loader
continue with the very next batch: same images, same order, same flips, for any `num_workers`.
Under a Trainer the saved position excludes the one batch Lightning's loop has prefetched but not
trained on; Lightning's own loop state for the (stateful) loader is saved and restored the same way.
Needs `torchdata` (>= 0.10) for `StatefulDataLoader`.
"""

from pathlib import Path
from typing import Any, Literal

import datasets
import lightning as L

from frcnn.data.coco_classes import COCO_CLASSES
from frcnn.data.coco_folder import CocoFolder
from frcnn.data.loader import StreamLoader
from frcnn.data.shapes import ensure_shapes
from frcnn.data.source import open_split
from frcnn.data.stream import DetectionStream
from frcnn.data.transforms import ResizeMode, DetectionTransform, build_resize

Source = Literal["hub", "shapes", "coco_folder"]


class DetectionDataModule(L.LightningDataModule):
    """Detection data from one of three sources, all read as Hub-schema rows by `DetectionStream`.

    Args:
        source: `hub` (a Hub dataset id or a local folder of Hub-schema parquet), `shapes`
            (generated into `path` on first use), or `coco_folder` (`{path}/{split}/instances.json`).
        path: Hub id or local folder.
        resize: `keep_ratio` (`min_size`/`max_size`), `square` (`square_size`) or `none`.
        hflip_prob: horizontal-flip probability for training.
        shuffle_buffer, seed: training shuffle (shard order + a buffer of rows), reseeded per epoch.
        skip_empty_train: drop training images without a valid box; validation keeps them.
        val_limit: only the first `val_limit` validation images (None: all).
        shapes: generation options of the `shapes` source (`ensure_shapes` kwargs).

    Attributes:
        num_classes: classes including background (81 for COCO and shapes).
        class_names: `num_classes` names, index 0 = "background".
        label_to_category_id: label → category id for results files. The Hub dataset carries no
            original COCO ids, so for `hub`/`shapes` label L maps to L; for `coco_folder` to the
            folder's own category ids (index 0, background, maps to 0).
    """

    def __init__(
        self,
        source: Source = "hub",
        path: str = "detection-datasets/coco",
        train_split: str = "train",
        val_split: str = "val",
        batch_size: int = 2,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        resize: ResizeMode = "keep_ratio",
        min_size: int = 800,
        max_size: int = 1333,
        square_size: int = 400,
        hflip_prob: float = 0.5,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        skip_empty_train: bool = True,
        val_limit: int | None = None,
        read_retries: int = 20,
        retry_interval_s: float = 5.0,
        shapes: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if source not in ("hub", "shapes", "coco_folder"):
            raise ValueError(f"data.source must be 'hub', 'shapes' or 'coco_folder', got {source!r}")
        self.source = source
        self.path = path
        self.train_split, self.val_split = train_split, val_split
        self.batch_size = batch_size
        self.loader_kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
        if num_workers > 0:
            self.loader_kwargs |= {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor}
        self.resize = build_resize(resize, min_size, max_size, square_size)
        self.hflip_prob = hflip_prob
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.skip_empty_train = skip_empty_train
        self.val_limit = val_limit
        self.read_retries, self.retry_interval_s = read_retries, retry_interval_s
        self.shapes_options = dict(shapes or {})
        if source == "coco_folder":
            folder = CocoFolder(path, train_split)
            self.class_names = ["background", *folder.class_names]
            self.label_to_category_id = [0, *folder.category_ids]
        else:
            self.class_names = ["background", *COCO_CLASSES]
            self.label_to_category_id = list(range(len(self.class_names)))
        self.num_classes = len(self.class_names)
        self.train_dataset: DetectionStream | None = None
        self.val_dataset: DetectionStream | None = None
        self._train_loader: StreamLoader | None = None
        self._train_state: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        """Generate the shapes set once (Lightning calls this on one process per node)."""
        if self.source == "shapes":
            ensure_shapes(self.path, **self.shapes_options)

    def setup(self, stage: str | None = None) -> None:
        """Open the streams (lazily: no image is read here)."""
        if self.source == "shapes":
            ensure_shapes(self.path, **self.shapes_options)  # no-op once generated; safe across ranks
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self._stream(self.train_split, train=True)
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self._stream(self.val_split, train=False)

    def _rows(self, split: str) -> datasets.IterableDataset:
        if self.source == "coco_folder":
            return CocoFolder(self.path, split).rows()
        return open_split(str(Path(self.path).expanduser()) if self.source == "shapes" else self.path, split)

    def _stream(self, split: str, train: bool) -> DetectionStream:
        return DetectionStream(
            self._rows(split),
            DetectionTransform(self.resize),
            shuffle=train,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            hflip_prob=self.hflip_prob if train else 0.0,
            skip_empty=self.skip_empty_train if train else False,
            limit=None if train else self.val_limit,
            read_retries=self.read_retries,
            retry_interval_s=self.retry_interval_s,
            num_classes=self.num_classes,
        )

    def train_dataloader(self) -> StreamLoader:
        """Batches `(images, targets)` of the shuffled training stream, resumed if a state was loaded."""
        if self.train_dataset is None:
            raise RuntimeError("call setup('fit') before train_dataloader()")
        # Lightning's training loop holds one batch prefetched beyond the one it trains on.
        prefetch_lag = 1 if self.trainer is not None else 0
        self._train_loader = StreamLoader(self.train_dataset, self.batch_size, prefetch_lag, **self.loader_kwargs)
        if self._train_state is not None:
            self.train_dataset.set_epoch(self._train_state["epoch"])
            self._train_loader.load_state_dict(self._train_state["loader"])
            self._train_state = None
        return self._train_loader

    def val_dataloader(self) -> StreamLoader:
        """Batches `(images, targets)` of the validation stream: fixed order, empty images kept."""
        if self.val_dataset is None:
            raise RuntimeError("call setup('fit') or setup('validate') before val_dataloader()")
        return StreamLoader(self.val_dataset, self.batch_size, **self.loader_kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the training stream for `epoch` (Lightning does this by itself; see the module doc)."""
        if self.train_dataset is not None:
            self.train_dataset.set_epoch(epoch)

    @property
    def num_corrupt(self) -> int:
        """Corrupt images skipped so far by the training and validation streams."""
        return sum(stream.num_corrupt for stream in (self.train_dataset, self.val_dataset) if stream is not None)

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position: `{"epoch", "loader"}`, or {} before a loader exists."""
        if self._train_loader is None or self.train_dataset is None:
            return {}
        return {"epoch": self.train_dataset.epoch, "loader": self._train_loader.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the next `train_dataloader()` continues where `state_dict` was taken."""
        self._train_state = state_dict or None
