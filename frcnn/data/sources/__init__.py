"""Data sources, one file each: a `frcnn.data.source.DataSource` chosen by `data.source._target_`.

- `hub.HubDataset`: COCO in the Hub schema, from the Hub (pinned to a commit) or a local copy.
- `shapes.Shapes`: a synthetic set generated on first use, then read as local parquet.
- `coco_folder.CocoFolder`: a COCO-format folder (`images/` + `instances.json`).
- `voc.VOCDevkit`: a Pascal VOC devkit as unpacked (`VOC2007/`, `VOC2012/`; docs/voc.md).
"""
