"""A DuckDB query's result, streamed into training batches: the relation is
read chunk by chunk through its Arrow stream, never materialised whole.

    python examples/loaders/duckdb_stream.py
"""

import duckdb
import numpy as np

import arrow_dlpack

con = duckdb.connect()
relation = con.sql("select i::double as x, (i * 2)::double as y, i % 7 as label from range(100000) t(i)")
seen = 0
for batch in arrow_dlpack.batches(relation, 4096, stack={"xy": ["x", "y"]}):
    xy = np.from_dlpack(batch["xy"])
    label = np.from_dlpack(batch["label"])
    assert xy.shape[1] == 2 and (xy[:, 1] == 2 * xy[:, 0]).all() and (label == xy[:, 0].astype(np.int64) % 7).all()
    seen += len(label)
assert seen == 100_000
print(f"duckdb_stream: {seen} rows in batches of 4096")
