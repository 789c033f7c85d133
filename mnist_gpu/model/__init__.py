"""The math, written once against ``xp``: the tutorial's network (``tutorial.py``), models side by
side (``stack.py``), layers (``layers.py``), the networks they make (``architecture.py``,
``network.py``), the documented configurations (``presets.py``) and saved models (``saved.py``)."""
