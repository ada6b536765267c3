"""The Faust worker: its app, tables, transport and store. The domain does the work;
this package gives it Kafka. What it needs from outside the stream arrives as WorkerEdges."""
