"""pyraftkv: a replicated key-value store with etcd's v3 data model."""

__version__ = "0.1.0"
