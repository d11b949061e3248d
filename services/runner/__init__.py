"""The agent runner: takes job requests, runs turns against the model, appends one event per turn."""
