"""Models under test: the protocol and the built-in baselines."""
