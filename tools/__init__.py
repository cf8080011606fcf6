"""wisp host tools: the `wisp` CLI, broker and simulator launchers."""
