"""Export a checkpoint's detector to one ONNX file: ``python export.py ckpt=PATH output=model.onnx``.

``ckpt`` is anything ``predict.py`` takes (a checkpoint of train.py, a state dict from
``python -m frcnn.convert``). The file holds the resize of the checkpoint's data config, the
normalisation, the network, both NMS stages and the mapping back to input pixels; run it with
``predict.py backend=onnxruntime ckpt=model.onnx``, ``frcnn.export.runtime.OnnxDetector`` or
plain onnxruntime (docs/export.md). See conf/export.yaml.
"""

from __future__ import annotations

import sys
import time

import hydra
from omegaconf import DictConfig

from frcnn.checkpoint import CheckpointError


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from frcnn.export.to_onnx import ExportError, export_checkpoint  # needs the `export` extra

    tic = time.perf_counter()
    try:
        output = export_checkpoint(cfg.ckpt, cfg.output)
    except (CheckpointError, ExportError) as error:
        print(f"export.py: {error}", file=sys.stderr)
        sys.exit(1)
    size_mb = output.stat().st_size / 2**20
    print(f"Exported {cfg.ckpt} to {output} ({size_mb:.0f} MB) in {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
