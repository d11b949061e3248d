"""The retention service: deletes old jobs by status and age, never one a running job continues."""
