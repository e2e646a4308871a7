"""The pre-dial check: the account's own URL, asked right before each campaign dial."""
