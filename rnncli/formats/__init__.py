"""Files and formats: rnncli's checkpoints (checkpoint.py), safetensors (safetensors.py),
PyTorch's layout (interop.py), ONNX (onnx_export.py), atomic writes (files.py)."""
