"""The webhook gateway: verifies GitHub deliveries, turns `/code` comments into job requests."""
