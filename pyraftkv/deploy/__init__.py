"""Deployment files shipped with the package: a systemd unit and a sample config file
(README: Deployment). ``python -c "import pyraftkv.deploy as d; print(d.__path__[0])"``
shows where they were installed."""
