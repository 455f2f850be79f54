"""Run tests/test_learning.py's training with a break planted, to show where its thresholds sit.

    python benchmarks/learning_breaks.py                   # intact, then every break, one after another
    python benchmarks/learning_breaks.py coder frozen_head

Breaks: ``coder`` (dx and dy swapped in ``BoxCoder.encode``: regression targets that decoding
misreads), ``frozen_head`` (the RoI head's parameters left out of the optimizer), ``no_box_loss``
(both box-regression losses multiplied by 0). Each run prints its final AP and AP50 on the
test's validation images and its wall time; run on an idle machine, one run at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import compose_config  # noqa: E402
from test_learning import final_scores, learning_overrides  # noqa: E402

from frcnn.lit.module import DetectionModule  # noqa: E402
from frcnn.modeling.faster_rcnn import FasterRCNN  # noqa: E402
from frcnn.ops.boxes import BoxCoder  # noqa: E402
from train import train  # noqa: E402


@contextlib.contextmanager
def planted(name: str) -> Iterator[None]:
    """The break ``name`` in place for the duration of the block ("intact": none)."""
    if name == "coder":
        target, attribute = BoxCoder, "encode"
        encode = BoxCoder.encode
        replacement = lambda self, gt, ref: encode(self, gt, ref)[..., [1, 0, 2, 3]]  # noqa: E731
    elif name == "frozen_head":
        target, attribute = DetectionModule, "configure_optimizers"
        configure = DetectionModule.configure_optimizers

        def replacement(self):
            self.model.roi_heads.requires_grad_(False)
            return configure(self)
    elif name == "no_box_loss":
        target, attribute = FasterRCNN, "forward"
        forward = FasterRCNN.forward

        def replacement(self, images, targets=None):
            out = forward(self, images, targets)
            return {k: v * 0 if k.endswith("_box") else v for k, v in out.items()} if self.training else out
    else:
        yield
        return
    original = getattr(target, attribute)
    setattr(target, attribute, replacement)
    try:
        yield
    finally:
        setattr(target, attribute, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = ["intact", "coder", "frozen_head", "no_box_loss"]
    parser.add_argument("breaks", nargs="*", metavar="BREAK", help=f"any of {choices}; default: all, in this order")
    args = parser.parse_args()
    unknown = set(args.breaks) - set(choices)
    if unknown:
        parser.error(f"unknown break(s) {sorted(unknown)}: choose from {choices}")
    for name in args.breaks or choices:
        with tempfile.TemporaryDirectory() as tmp, planted(name):
            start = time.perf_counter()
            train(compose_config(learning_overrides(Path(tmp)), Path(tmp) / "run"))
            ap, ap50 = final_scores(Path(tmp) / "run")
            print(f"{name:12s} AP {ap:.3f}  AP50 {ap50:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
