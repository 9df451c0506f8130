"""SAGE's sage.common: the function base classes live in sage.common.core."""
