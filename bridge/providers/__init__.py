"""Clients for the inference tiers the bridge forwards device requests to."""
