"""HTTP routes: thin handlers that parse, authenticate and hand over to the pipeline."""
