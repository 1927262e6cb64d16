.PHONY: run test services-down lint
run:            ## set up and run (services now; the full pipeline as roles land)
	scripts/run
test:           ## set up and run every check and test against real services
	scripts/test
services-down:  ## stop the local Kafka and PostgreSQL
	.venv/bin/mdp services down
