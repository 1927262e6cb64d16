# The end-to-end tests' `pipeline` fixture (a processor and a sink of a test's own), for the
# import tests that follow dump rows into PostgreSQL.
from tests.e2e.conftest import pipeline  # noqa: F401
