"""Where a split's rows come from: a `DataSource` (a dataset: categories and splits) opens each
split as a `RowSource`; Hub-schema parquet files are read one row group at a time.

`open_split(path, split)` finds the split's parquet files on one fsspec filesystem: the local
disk for a folder (`{path}/{split}/**/*.parquet` or a Hub snapshot's `**/{split}-*.parquet`), or
the Hugging Face Hub's `HfFileSystem` for a dataset id, pinned to one commit. Everything after
that — footers, row groups, retries — is the same code for both, so the Hub path is the path the
tests run, only on another filesystem.

A source is cut into *units* (a parquet row group; a chunk of images for a COCO folder): the
smallest piece that is read at once. `annotations()` reads every row without its image (cheap:
the `objects` column only), so the stream can index, balance and evaluate the split before any
image is decoded.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from frcnn.data.schema import ANNOTATION_COLUMNS, ROW_COLUMNS, check_arrow_schema

Row = dict[str, Any]


class DataSourceError(RuntimeError):
    """A data source that cannot be opened or read; the message says how to go on."""


class DataSource(ABC):
    """A dataset: its categories and its splits as `RowSource`s of Hub-schema rows.

    One class per source in `frcnn/data/sources/`, chosen by the data config's `source:` node
    (`conf/data/*.yaml`); `DetectionDataModule` builds it with the data config's own keys that it
    does not take itself (`path`, `revision`, ...). See docs/architecture.md, "How to add a dataset".
    """

    def prepare(self) -> None:
        """Make the data where it is made on first use; called once per node, then on every rank
        (must be a no-op once made). Default: nothing to make."""

    def folder_to_write(self) -> Path | None:
        """The folder `prepare()` is still to write (checked before the run starts), or None."""
        return None

    @abstractmethod
    def categories(self, split: str) -> tuple[list[str], list[int]]:
        """The name and the dataset's own id (for results files) of each 0-based `category`,
        as `split` (the training split) declares them."""

    @abstractmethod
    def open(self, split: str) -> "RowSource":
        """`split`'s rows; raises `DataSourceError` (one line) when it cannot be opened."""


class RowSource(ABC):
    """A split as units of Hub-schema rows, addressed by a global row index.

    Attributes:
        description: what to name in messages (`data.path=... (val)`).
        revision: the dataset revision read (a Hub commit), or a fingerprint of local files.
        unit_sizes (ndarray[U]): rows per unit; rows are numbered unit after unit.
        problems: rows or annotations the source itself left out, per kind (a COCO folder's
            missing files and unknown ids).
    """

    description: str
    revision: str | None
    unit_sizes: np.ndarray
    problems: dict[str, int] = {}

    @property
    def num_rows(self) -> int:
        return int(self.unit_sizes.sum())

    @property
    def unit_starts(self) -> np.ndarray:
        """(ndarray[U + 1]) global index of each unit's first row, then the row count."""
        return np.concatenate([[0], np.cumsum(self.unit_sizes)]).astype(np.int64)

    @abstractmethod
    def read_unit(self, unit: int) -> list[Row]:
        """The rows of `unit`, images included (still encoded)."""

    @abstractmethod
    def annotations(self) -> list[Row]:
        """Every row without its image (`image_id`, `width`, `height`, `objects`), in row order."""


class ParquetSource(RowSource):
    """Hub-schema parquet files on one fsspec filesystem; a unit is one row group.

    Every footer is read when the source is opened: an unreadable file or a schema without the
    Hub's columns fails there, in one line naming the file. Reads that fail with an `OSError`
    (network) are retried `read_retries` times, `retry_interval_s` apart, then reported in one
    line naming the file; on the local disk there is no network to wait for, so such a file is
    named corrupt at once.
    """

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        files: list[str],
        description: str,
        revision: str | None,
        read_retries: int = 20,
        retry_interval_s: float = 5.0,
    ) -> None:
        self.fs, self.files, self.description, self.revision = fs, list(files), description, revision
        self.read_retries, self.retry_interval_s = read_retries, retry_interval_s
        self._open: dict[int, pq.ParquetFile] = {}
        self._open_in = os.getpid()
        unit_file, unit_group, sizes = [], [], []
        for file_index, file in enumerate(self.files):
            metadata = self._with_retries(file_index, lambda handle: handle.metadata)
            check_arrow_schema(metadata.schema.to_arrow_schema(), f"{description}: {file}")
            for group in range(metadata.num_row_groups):
                unit_file.append(file_index)
                unit_group.append(group)
                sizes.append(metadata.row_group(group).num_rows)
        self.unit_file = np.asarray(unit_file, dtype=np.int64)
        self.unit_group = np.asarray(unit_group, dtype=np.int64)
        self.unit_sizes = np.asarray(sizes, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        # Open file handles stay in the process that opened them (DataLoader workers reopen).
        return {**self.__dict__, "_open": {}}

    def _handles(self) -> dict[int, pq.ParquetFile]:
        """This process's open files. A forked DataLoader worker inherits its parent's handles,
        whose file offsets it would share with the parent and its siblings: it opens its own."""
        if self._open_in != os.getpid():
            self._open, self._open_in = {}, os.getpid()
        return self._open

    def read_unit(self, unit: int) -> list[Row]:
        file_index, group = int(self.unit_file[unit]), int(self.unit_group[unit])
        table = self._with_retries(file_index, lambda handle: handle.read_row_group(group, columns=list(ROW_COLUMNS)))
        return table.to_pylist()

    def annotations(self) -> list[Row]:
        rows: list[Row] = []
        for file_index in range(len(self.files)):
            table = self._with_retries(file_index, lambda handle: handle.read(columns=list(ANNOTATION_COLUMNS)))
            rows += table.to_pylist()
        return rows

    def _with_retries(self, file_index: int, read):
        """`read(parquet_file)`, retried on `OSError`; a file that is not parquet fails at once."""
        file = self.files[file_index]
        for attempt in range(self.read_retries + 1):
            handles = self._handles()
            try:
                if file_index not in handles:
                    handles[file_index] = pq.ParquetFile(self.fs.open(file, "rb"))
                return read(handles[file_index])
            except pa.ArrowInvalid as error:
                raise DataSourceError(
                    f"{self.description}: {file} is not a readable parquet file ({error}); "
                    "delete it or download it again"
                ) from None
            except OSError as error:
                handles.pop(file_index, None)
                if isinstance(self.fs, LocalFileSystem):  # no network to wait for: the bytes are bad
                    raise DataSourceError(
                        f"{self.description}: {file} is corrupt or unreadable ({' '.join(str(error).split())}); "
                        "delete it or download it again"
                    ) from None
                if attempt == self.read_retries:
                    raise DataSourceError(
                        f"{self.description}: reading {file} failed {attempt + 1} times ({error}); "
                        "check the connection or raise data.read_retries"
                    ) from None
                time.sleep(self.retry_interval_s)


def split_files(fs: fsspec.AbstractFileSystem, root: str, split: str) -> list[str]:
    """The parquet files of `split` under `root`, sorted: `{split}/**/*.parquet` or `**/{split}-*.parquet`."""
    found = set(fs.glob(f"{root}/{split}/**/*.parquet")) | set(fs.glob(f"{root}/**/{split}-*.parquet"))
    return sorted(found)


def open_split(
    path: str, split: str, revision: str | None = None, read_retries: int = 20, retry_interval_s: float = 5.0
) -> ParquetSource:
    """Open `split` of `path` (a local folder or a Hub dataset id) as a `ParquetSource`.

    `revision` pins a Hub dataset (a branch, tag or commit; None: the main branch), resolved to a
    commit once so that every file of the run comes from the same one.

    Raises:
        DataSourceError: the folder does not exist or holds no files for `split`, a file is not
            parquet, or the Hub is unreachable.
        SchemaError: a file lacks a column of the Hub schema.
    """
    root = Path(path).expanduser()
    if root.exists():
        fs, base, resolved = fsspec.filesystem("file"), str(root.resolve()), None
    elif path.startswith(("/", ".", "~")) or path.count("/") != 1:
        raise DataSourceError(f"data.path={path} does not exist: give a local parquet folder or a Hub dataset id")
    else:
        fs, base, resolved = _hub_filesystem(path, revision)
    files = split_files(fs, base, split)
    if not files:
        raise DataSourceError(
            f"data.path={path} holds no parquet files for split {split!r} "
            f"(expected {split}/*.parquet or {split}-*.parquet under it)"
        )
    source = ParquetSource(fs, files, f"data.path={path} ({split})", None, read_retries, retry_interval_s)
    source.revision = resolved or _fingerprint(fs, files)
    return source


def _hub_filesystem(repo_id: str, revision: str | None) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(HfFileSystem, the dataset's root at one commit, that commit) for a Hub dataset id."""
    from huggingface_hub import HfApi, HfFileSystem

    try:
        commit = HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception as error:  # noqa: BLE001 - any failure here means "cannot reach the dataset"
        raise DataSourceError(
            f"Could not reach the Hugging Face Hub for {repo_id!r} ({type(error).__name__}); go on with data=shapes, "
            f"or data.path=/a/local/copy (huggingface-cli download --repo-type dataset {repo_id} --local-dir DIR)"
        ) from None
    return HfFileSystem(), f"datasets/{repo_id}@{commit}", commit


def _fingerprint(fs: fsspec.AbstractFileSystem, files: list[str]) -> str:
    """A local split's identity for resume checks: file names and sizes, hashed."""
    import hashlib

    listing = "\n".join(f"{Path(file).name}:{fs.size(file)}" for file in files)
    return "local-" + hashlib.sha1(listing.encode()).hexdigest()[:12]
