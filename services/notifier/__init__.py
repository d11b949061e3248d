"""The notifier service: POSTs each ended job's outcome to its callback URL, signed and retried."""
