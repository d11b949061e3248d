"""The auto-resume service: resumes failed jobs whose failure is retryable, within a per-chain limit."""
