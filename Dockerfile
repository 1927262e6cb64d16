# The image every role of the pipeline runs from: `mdp <role>`, and the sandbox venues of
# compose's sandbox mode: `python -m sandbox.<venue>` (see compose.yaml).
#
#   docker build -t marketdata-pipeline .
#   docker run --rm marketdata-pipeline config
#   docker run --rm --entrypoint python marketdata-pipeline -m sandbox.binance --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# An unprivileged user with a fixed uid, so that volume permissions are predictable.
RUN groupadd --system --gid 10001 mdp \
    && useradd --system --uid 10001 --gid mdp --create-home --home-dir /home/mdp mdp

WORKDIR /app

# The whole build context (trimmed by .dockerignore): pyproject.toml, README.md, the packages
# (sandbox/ with its recordings, installed as package data),
# migrations/ and alembic.ini when present. `mdp migrate` runs from this directory.
COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

USER mdp

ENTRYPOINT ["mdp"]
CMD ["--help"]
