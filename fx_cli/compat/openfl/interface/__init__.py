"""``openfl.interface``: only the aggregation-function interface (the interactive API is not part of fx)."""
