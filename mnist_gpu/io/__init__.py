"""Where mnist-gpu writes and what it reads back: files written atomically, the per-user cache
directory (``files.py``), and weight files (``weights.py``)."""
