"""outdial: outbound AI voice-call campaigns, self-hosted."""

__version__ = "0.1.0"
