"""The math, written once against ``xp``: the tutorial's network (``tutorial.py``), models side by
side (``stack.py``), layers (the base ``layer.py``, then one module per family of layer types:
``dense.py``, ``conv.py`` over the array path of ``layers.py``, ...), the networks they make
(``network.py``), the words that name them and the older settings (``architecture.py``), the
documented configurations (``presets.py``) and saved models (``saved.py``)."""
