"""The figure every picture of mnist-gpu is drawn on (imported only when one is asked for: it
needs matplotlib, the ``plot`` extra).

A ``Figure`` made without pyplot has no manager and, until pyplot is imported, Jupyter has no
formatter for it: a cell returning one would show its text, ``<Figure size ...>``. This one
renders itself as a PNG (``_repr_png_``), so that it shows inline in any notebook without
pyplot, its global figures or ``matplotlib.use``. Where the inline backend has registered its own
formatter for figures (after ``import matplotlib.pyplot``), IPython uses that one instead, and the
picture is shown once either way.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


class InlineFigure(Figure):
    """A ``matplotlib.figure.Figure`` on its own Agg canvas that a notebook shows inline."""

    def __init__(self, **options):
        super().__init__(**options)
        FigureCanvasAgg(self)

    def png(self, **options) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", **options)
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        # As the inline backend draws a figure: cropped to what is drawn.
        return self.png(bbox_inches="tight")
