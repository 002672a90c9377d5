"""Entry points: the recagent command."""
