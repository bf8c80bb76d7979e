"""Byzantine-robust aggregators: rules that bound what a few malicious clients can do.

Each is an :class:`~fedhive.strategy.compose.Aggregator`, so a strategy takes one as its
``aggregator`` (``fedavg(aggregator=Krum(byzantine=2))``).

Unlike :class:`~fedhive.strategy.compose.WeightedMean`, the rules here need every update
at once and hold them all: O(n·d) float64 memory for n replies of d parameters (8·n·d
bytes, up to twice that while the updates are stacked). :class:`NormBound` is the
exception: it clips one update at a time and streams into the aggregator it wraps.

The statistics are **unweighted**, as in the papers: ``num_examples`` is the client's own
claim, and a weighted rule would let one liar buy unbounded influence by claiming a huge
count. The aggregate still reports ``total_weight`` (the sum of the claimed counts) and
example-weighted metrics. Results do not depend on the order replies arrive in: rows are
ordered by client id before any statistic, and ties are broken by that order.
"""

from fedhive.strategy.robust.bulyan import Bulyan
from fedhive.strategy.robust.krum import Krum
from fedhive.strategy.robust.median import CoordinateMedian
from fedhive.strategy.robust.norm_bound import NormBound
from fedhive.strategy.robust.trimmed_mean import TrimmedMean

__all__ = ["Bulyan", "CoordinateMedian", "Krum", "NormBound", "TrimmedMean"]
