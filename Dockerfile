# One image for web, worker, beat and gpu-worker. TORCH_INDEX picks the torch build:
# the CPU one by default, e.g. https://download.pytorch.org/whl/cu124 for the gpu-worker.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=cotrain_site.settings.production \
    COTRAIN_VAR_DIR=/data/var \
    COTRAIN_ARTIFACT_ROOT=/data/artifacts

WORKDIR /app
RUN useradd --create-home --uid 1000 cotrain && mkdir -p /data/var /data/artifacts && chown -R cotrain /data

COPY requirements/torch.txt requirements/torch.txt
RUN pip install --index-url "$TORCH_INDEX" -r requirements/torch.txt

# README.md is the package readme named in pyproject.toml.
COPY pyproject.toml README.md* ./
COPY trainer/ trainer/
COPY worker/ worker/
RUN pip install .

COPY manage.py ./
COPY platform/ platform/
COPY templates/ templates/
# collectstatic needs settings that import; the build-time key is never used at run time.
RUN DJANGO_SECRET_KEY=build-only-$(python -c 'import secrets; print(secrets.token_urlsafe(64))') \
    REDIS_URL=redis://build-only:6379/0 python manage.py collectstatic --noinput

USER cotrain
EXPOSE 8000
CMD ["gunicorn", "--chdir", "platform", "--bind", "0.0.0.0:8000", "--workers", "3", "cotrain_site.wsgi:application"]
