"""What the server and the offline tools (pyraftkvctl snapshot restore/status) share: how a
cluster and its members are named, the data-dir layout, and backup files. It may reach the
store and the WAL; it knows nothing of the running node."""
