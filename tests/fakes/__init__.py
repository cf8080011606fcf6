"""Test doubles for external services (paid inference APIs)."""
