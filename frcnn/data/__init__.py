"""Detection data: Hub-schema rows (COCO on the Hub, local parquet, `shapes`, COCO folders) → `(images, targets)`."""
