"""Infrastructure shared by every turnlog service: settings, the NATS connection and the event store."""
