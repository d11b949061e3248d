"""The REST API: checkpoints, jobs, resume and replay over HTTP, served by Litestar."""
