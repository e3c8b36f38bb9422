"""System jobs: the end-to-end probe and the outbox sweeper."""
