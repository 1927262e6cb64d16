.PHONY: run test services-down lint
run:            ## set up and run the whole pipeline (Ctrl-C stops; ARGS="--duration 60")
	scripts/run $(ARGS)
test:           ## set up and run every check and test against real services
	scripts/test
services-down:  ## stop the local Kafka and PostgreSQL
	.venv/bin/mdp services down
