"""Environments, streams and the runtime context of SAGE's API."""
