"""Fixture folders in the exact on-disk layouts of the 15 CoOp datasets (see ``builders.FIXTURES``)."""
