"""Matplotlib without pyplot, behind one lock.

The live server renders plots in request threads while the harness may render a report in
the main thread; matplotlib's text layout (mathtext, font caches) is not thread-safe, so
every figure in the arena is drawn while holding `MPL_LOCK`, on a pyplot-free Figure.
"""

from __future__ import annotations

import io
import threading

MPL_LOCK = threading.RLock()


def new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
