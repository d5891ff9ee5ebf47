# M2D. `make demo` to try it, `make test` to test it. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help:
	@echo "make demo   set up and start everything, submit the toy sample, register the CLaM sample's model, stay in the foreground (Ctrl-C stops)"
	@echo "make up     the same stack in the background;  make down  stops it"
	@echo "make test   the whole test suite (starts and stops the services it needs)"
	@echo "make bench  the performance figures P1-P8 on a stack of its own (BENCH_QUICK=1: a short run)"
	@echo "make lint   ruff and the import contracts"

demo:
	@scripts/stack.sh demo

up:
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

setup:
	@scripts/stack.sh setup

test:
	@scripts/test.sh $(PYTEST_ARGS)

bench:
	@bench/run.sh

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports

.PHONY: help demo up down setup test bench lint
