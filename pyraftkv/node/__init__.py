"""The pyraftkv node: an application process and a Raft process joined by shm rings."""
