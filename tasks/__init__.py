"""Job areas: one package per area, each with `args.py` (argument models), `jobs.py` (Celery faces) and logic."""
