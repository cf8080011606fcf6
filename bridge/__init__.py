"""wisp bridge: routes device LLM requests to inference tiers."""
