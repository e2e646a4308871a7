"""The dialer: turns running campaigns into calls, within every limit, losing nothing."""
