"""Event contracts, read models and the NATS topology that every turnlog service shares."""
