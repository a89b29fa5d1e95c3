"""Click commands, one module per pipeline stage; each wraps the library API."""
