"""Billing: usage ingest and aggregation, quotas, invoices and the subscription lifecycle.

The logic lives in plain functions taking a Session (ingest, aggregation, quotas, invoicing, lifecycle); `jobs.py`
is the thin Celery face and `args.py` the argument contract.
"""
