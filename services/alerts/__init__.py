"""The alerts service: rules over the event stream and the projections, sent to the log, NATS and a webhook."""
