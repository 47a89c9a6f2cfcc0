"""CLI verbs, one module each (see ``harness.cli``)."""
