"""Checking a cluster's behaviour from the outside: a linearizability checker over recorded
histories (linearizability.py, pure) and the workload that records them (workload.py)."""
