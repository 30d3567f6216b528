"""gRPC metadata keys that services and their clients agree on (lower case, as gRPC requires)."""

# Initial metadata of a Train call: the id of the run it started, sent as soon as the run exists, so that a
# client whose stream breaks can follow the run with WatchRun.
RUN_ID = "plasma-run-id"
