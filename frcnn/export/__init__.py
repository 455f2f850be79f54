"""The detector as one ONNX file, and a reader that runs it without PyTorch.

``frcnn.export.onnx`` writes the file (``python export.py``); ``frcnn.export.runtime`` runs
it with NumPy, onnxruntime and PIL only. Nothing here is imported by ``import frcnn.export``,
so the reader's import pulls in no torch.
"""
