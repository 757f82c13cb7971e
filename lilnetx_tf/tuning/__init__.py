"""Trade-off search with keras-tuner: the accuracy / file size / compute Pareto front.

    import lilnetx_tf as lnx
    result = lnx.tuning.search(build, x=train, validation_data=val, epochs=2, max_trials=12,
                               directory="runs/tune")
    print(result.table())                        # the front
    best = result.pick(min_accuracy=0.98)        # smallest file with ≥ 98 % accuracy
    result.plot("runs/tune/front.png")
"""

from lilnetx_tf.tuning.pareto import AXES, NoMatchingTrialError, dominates, pareto_front, pick
from lilnetx_tf.tuning.search import (COMPRESSED_FILE, DEFAULT_RATE_RANGE, DEFAULT_SLICE_RANGE,
                                      LilNetXHyperModel, SearchResult, TrialRecord,
                                      format_table, load, search)
from lilnetx_tf.tuning.plot import plot_front

__all__ = ["AXES", "COMPRESSED_FILE", "DEFAULT_RATE_RANGE", "DEFAULT_SLICE_RANGE",
           "LilNetXHyperModel", "NoMatchingTrialError", "SearchResult", "TrialRecord",
           "dominates", "format_table", "load", "pareto_front", "pick", "plot_front", "search"]
