"""Pictures: figures of training (``figures.py``, matplotlib ``Figure`` objects) and your own
digits read as MNIST's were made (``digits.py``, Pillow). Both need the ``plot`` extra, imported
only when a picture is asked for."""
