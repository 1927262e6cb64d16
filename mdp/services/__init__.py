"""Local Kafka and PostgreSQL for development and tests: Docker when it answers, else native."""
