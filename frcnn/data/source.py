"""Open one split of a Hub-schema dataset as a `datasets.IterableDataset` of undecoded rows.

`path` is either a Hub dataset id (streamed with `datasets.load_dataset(..., streaming=True)`) or a
local folder of parquet files in the Hub schema: `{path}/{split}/*.parquet`, or a Hub snapshot
(`huggingface-cli download --repo-type dataset ID --local-dir DIR`) holding `{split}-*.parquet`.
Images stay encoded (`Image(decode=False)`) so that a corrupt file is skipped by the stream
instead of breaking the iteration.
"""

from pathlib import Path

import datasets

from frcnn.data.schema import check_schema


class DataSourceError(RuntimeError):
    """A data source that cannot be opened; the message says how to go on."""


def set_read_retries(max_retries: int, interval_s: float) -> None:
    """How often `datasets` retries a failed streaming read or open, and the wait between tries."""
    datasets.config.STREAMING_READ_MAX_RETRIES = max_retries
    datasets.config.STREAMING_READ_RETRY_INTERVAL = interval_s
    datasets.config.STREAMING_OPEN_MAX_RETRIES = max_retries
    datasets.config.STREAMING_OPEN_RETRY_INTERVAL = interval_s


def local_split_files(root: Path, split: str) -> list[str]:
    """The parquet files of `split` under `root`, sorted: `{split}/**/*.parquet` or `**/{split}-*.parquet`."""
    files = set(root.glob(f"{split}/**/*.parquet")) | set(root.glob(f"**/{split}-*.parquet"))
    return sorted(str(file) for file in files)


def open_split(path: str, split: str) -> datasets.IterableDataset:
    """Open `split` of `path` (Hub id or local parquet folder) as a stream of Hub-schema rows.

    Raises:
        DataSourceError: the folder does not exist or holds no files for `split`, or the Hub is unreachable.
        SchemaError: a column of the Hub schema is missing.
    """
    root = Path(path).expanduser()
    if root.exists():
        files = local_split_files(root, split)
        if not files:
            raise DataSourceError(
                f"data.path={path} holds no parquet files for split {split!r} "
                f"(expected {split}/*.parquet or {split}-*.parquet under it)"
            )
        rows = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
        source = f"data.path={path} ({split})"
    elif path.startswith(("/", ".", "~")) or path.count("/") != 1:
        raise DataSourceError(f"data.path={path} does not exist: give a local parquet folder or a Hub dataset id")
    else:
        try:
            rows = datasets.load_dataset(path, split=split, streaming=True)
        except ConnectionError as error:
            raise DataSourceError(
                f"Could not reach the Hugging Face Hub for {path!r} ({error}); go on with data=shapes, "
                f"or data.path=/a/local/copy (huggingface-cli download --repo-type dataset {path} --local-dir DIR), "
                "or set HF_DATASETS_OFFLINE=1 to use the local cache"
            ) from None
        source = f"{path} ({split})"
    check_schema(rows.features, source)
    return rows.cast_column("image", datasets.Image(decode=False))
