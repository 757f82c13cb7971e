"""PNG scatter of a search: accuracy against file size and against MACs, front highlighted.

Uses matplotlib's Agg canvas directly (no pyplot), so it never changes the user's backend.
"""

import os
from typing import Optional, Sequence

from lilnetx_tf import _compat

__all__ = ["plot_front"]


def plot_front(trials: Sequence, front: Sequence, path: str, metric: str = "accuracy",
               pick=None, title: Optional[str] = None) -> str:
  """Writes `path` (PNG): every completed trial in grey, the front in colour, `pick` ringed."""
  FigureCanvasAgg = _compat.require("matplotlib.backends.backend_agg", "tuning").FigureCanvasAgg
  Figure = _compat.require("matplotlib.figure", "tuning").Figure

  done = [t for t in trials if t.completed]
  figure = Figure(figsize=(10, 4.2), dpi=110)
  FigureCanvasAgg(figure)
  for index, (field, label) in enumerate((("bytes", "compressed file size (bytes)"),
                                          ("macs", "effective MACs per example"))):
    axes = figure.add_subplot(1, 2, index + 1)
    axes.scatter([getattr(t, field) for t in done], [t.accuracy for t in done], s=22,
                 color="0.65", label="trials", zorder=2)
    # No connecting line: the front is 3-D, its members need not be monotone in a 2-D view.
    axes.scatter([getattr(t, field) for t in front], [t.accuracy for t in front], s=40,
                 color="tab:blue", label="Pareto front (acc, bytes, MACs)", zorder=3)
    for t in front:
      axes.annotate(t.trial_id, (getattr(t, field), t.accuracy), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    if pick is not None:
      axes.scatter([getattr(pick, field)], [pick.accuracy], s=160, facecolors="none",
                   edgecolors="tab:red", linewidths=2, label=f"pick (trial {pick.trial_id})",
                   zorder=4)
    values = [getattr(t, field) for t in done]
    if values and min(values) > 0 and max(values) / min(values) > 20:
      axes.set_xscale("log")
    axes.set_xlabel(label)
    axes.set_ylabel(f"validation {metric}")
    axes.grid(True, alpha=0.3)
    if index == 0:
      axes.legend(fontsize=8, loc="lower right")
  figure.suptitle(title or f"LilNetX trade-off: {len(done)} trials, {len(front)} on the front")
  figure.tight_layout()
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  figure.savefig(path, format="png")
  return path
