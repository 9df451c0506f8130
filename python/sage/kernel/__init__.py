"""SAGE's sage.kernel: the environments and streams are in sage.kernel.api."""
