# A custom aggregation function written against OpenFL 1.9's interface only (no fx imports).
from openfl.interface.aggregation_functions import AggregationFunction


class HalfStep(AggregationFunction):
    """The global model moves half way from where it was towards the weighted average."""

    def call(self, local_tensors, db_iterator, tensor_name, fl_round, tags):
        base = next(row["nparray"] for row in db_iterator
                    if row["tensor_name"] == tensor_name and "model" in row["tags"])
        update = sum(t.weight * (t.tensor.astype("float64") - base) for t in local_tensors)
        return base + 0.5 * update
