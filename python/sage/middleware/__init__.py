"""SAGE's middleware: operators built into sage, run in C++ (sage.middleware.operators.rag)."""
