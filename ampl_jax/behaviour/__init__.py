"""Behaviour policies for making offline datasets: an online SAC trainer and its shipped snapshots."""
