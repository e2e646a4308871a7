"""The account's do-not-call list, and the checks the dialer makes right before a dial."""
