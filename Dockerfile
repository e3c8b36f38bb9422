# One image for every service (api, workers, beat, flower, migrate); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""
WORKDIR /app

COPY pyproject.toml requirements.lock ./
COPY workers/ workers/
COPY tasks/ tasks/
COPY models/ models/
COPY api/ api/
COPY benchmarks/ benchmarks/
COPY celeryconfig.py beat_schedule.py alembic.ini ./
RUN pip install -c requirements.lock . && useradd --create-home --uid 10001 artisan
USER artisan

EXPOSE 8000 5555
CMD ["python", "-m", "uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
