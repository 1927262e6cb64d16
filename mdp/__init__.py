"""The application floor: the `mdp` command, `mdp run` (pipeline, supervisor, board) and the local
services (native Kafka and PostgreSQL, compose). It wires the roles together; nothing below it
(the kernel `marketdata`, the roles) imports it."""
