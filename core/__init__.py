"""Shared types and errors: the bottom layer every other package may import (it imports none of ours)."""
