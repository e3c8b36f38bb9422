"""The minimal enqueue API in front of the job backend."""
