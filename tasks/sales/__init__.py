"""Sales intelligence: activity ingest, the AI Salesboard sync and adaptive outbound learning."""
