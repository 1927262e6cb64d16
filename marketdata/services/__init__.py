"""Local Kafka and PostgreSQL for development and tests: Docker when an engine answers, else native."""
