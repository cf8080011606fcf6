"""One device `llm/req` from arrival to its `done`: read and check it (request, translate), dedupe, the round of
model turns (round, prompt, validate), the llm/res stream (answer), and the Outcome everything else accounts from."""
