# Documented entry points: make run, make test (also: lint, bench, migrations-check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)  ## Create the venv, migrate, seed the demo city once, serve on $(PORT)
	mkdir -p instance
	$(BIN)/tipline db upgrade
	@if [ ! -f instance/.demo-seeded ]; then \
		$(BIN)/tipline demo seed | tee instance/demo-seed.txt && touch instance/.demo-seeded; \
	fi
	@echo ""
	@echo "Tipline is starting on http://127.0.0.1:$(PORT)"
	@echo "  JSON API:      http://127.0.0.1:$(PORT)/api/v1/openapi.json"
	@echo "  mobile form:   http://127.0.0.1:$(PORT)/report"
	@echo "  admin page:    http://127.0.0.1:$(PORT)/admin/"
	@echo "  demo login:    supervisor / tipline-demo (also admin, town-supervisor, grid-worker-1)"
	@echo "  demo invites:  instance/demo-seed.txt"
	@if [ -n "$$TELEGRAM_BOT_TOKEN" ]; then $(BIN)/tipline bot & fi
	$(BIN)/gunicorn --bind 127.0.0.1:$(PORT) --workers 2 --threads 4 \
		--access-logformat '%(m)s %(U)s %(s)s %(M)sms' --access-logfile - wsgi:app

test: $(STAMP)  ## Create/update the venv and run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench

format: $(STAMP)
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

# Needs PostgreSQL at TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
# keeps the 1,000,000-tip database tipline_bench_queue for the next run (see docs/performance.md).
bench: $(STAMP)  ## Benchmarks beside their same-run baselines; tables + bench/results/*.json
	sh bench/setup.sh
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
