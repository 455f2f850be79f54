"""The progress bar of evaluate.py and predict.py: images done of all, images/s, time spent."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class ImagesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} images/s" if task.speed else "- images/s", style="progress.data.speed")


def image_progress(label: str) -> Progress:
    """A rich ``Progress`` on stderr (stdout keeps the results); ``add_task(label, total=N)``."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), ImagesPerSecond(), TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True))
