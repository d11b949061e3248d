"""`make bench`: turnlog's performance targets, each measured beside a baseline from the same run."""
