"""Stand-ins shipped for tests, the demo and the benchmarks: a local agent and meeting replicas."""
