"""Built-in operators (rag: retrieval, prompting and generation)."""
