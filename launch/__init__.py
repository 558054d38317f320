"""Sweep launchers (local processes or Cloud TPU VMs); see launch/README.md."""
