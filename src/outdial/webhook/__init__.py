"""Lifecycle webhooks: endpoints an account registers, the outbox, and signed delivery."""
