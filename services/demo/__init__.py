"""`make demo`: the rate-limited job resumed to completion, played on a real embedded stack."""
