"""From text to ids: tokenizers (tokenizers.py), corpora read in blocks (data.py), labelled
examples encoded and batched by length (examples.py)."""
