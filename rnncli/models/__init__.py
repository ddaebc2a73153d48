"""The language model and its parts: embedding -> stack -> head (model.py), a layer = a cell + a
direction and the stack (layers.py), the heads (heads.py)."""
