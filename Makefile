# Amanat: `make run` sets up and serves the demo; `make test` runs the suite on
# SQLite, then on PostgreSQL when one answers (required in CI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app wsgi
STAMP  := $(VENV)/.installed-stamp
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install translations extract-messages migrate seed run test test-sqlite test-postgres otp clean bench backup

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

install: $(STAMP) translations

# Compiled catalogs are build products (not committed): the .po files are the source.
translations: $(STAMP)
	@$(BIN)/pybabel compile -d referral/translations > /dev/null 2>&1

# For developers: refresh the template and merge new messages into every catalog.
extract-messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ -k P_ -o referral/translations/messages.pot .
	$(BIN)/pybabel update -i referral/translations/messages.pot -d referral/translations

migrate: install
	$(FLASK) db upgrade

seed: migrate
	$(FLASK) demo seed

run: seed
	@echo ""
	@echo "Amanat is starting at http://$(HOST):$(PORT)  (health: http://$(HOST):$(PORT)/healthz)"
	@echo "Sign in with a demo e-mail above and the demo password; for the TOTP code run:"
	@echo "    make otp EMAIL=aigul.officer@demo.amanat.example"
	@echo "Notifications are delivered by an outbox worker running beside it (console adapter: instance/outbox.log)."
	@echo ""
	@mkdir -p instance; $(FLASK) outbox deliver >> instance/outbox.log 2>&1 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(FLASK) run --host $(HOST) --port $(PORT)

# A database backup (pg_dump, or SQLite's online backup) into $(BACKUP_DIR); the keyring is NOT in it.
# The restore drill is in docs/operations.md.
BACKUP_DIR ?= backups
backup: install
	@$(FLASK) backup create --out $(BACKUP_DIR)

otp: install
	@test -n "$(EMAIL)" || { echo "usage: make otp EMAIL=<demo e-mail>"; exit 2; }
	@$(FLASK) demo otp "$(EMAIL)"

test: install
	@$(MAKE) --no-print-directory test-sqlite
	@$(MAKE) --no-print-directory test-postgres

test-sqlite: install
	@echo "== test suite on SQLite =="
	REFERRAL_TEST_DATABASE_URL= $(BIN)/pytest

test-postgres: install
	@if $(BIN)/python tests/pg_available.py "$(PG_TEST_URL)"; then \
		echo "== test suite on PostgreSQL ($(PG_TEST_URL)) =="; \
		REFERRAL_TEST_DATABASE_URL="$(PG_TEST_URL)" $(BIN)/pytest; \
	elif [ "$$REFERRAL_REQUIRE_POSTGRES" = "1" ]; then \
		echo "ERROR: PostgreSQL is required (REFERRAL_REQUIRE_POSTGRES=1) but does not answer at $(PG_TEST_URL)"; \
		exit 1; \
	else \
		echo ""; \
		echo "********************************************************************"; \
		echo "* PostgreSQL run SKIPPED: no server answers at $(PG_TEST_URL)"; \
		echo "* Only the SQLite run above was done. Set PG_TEST_URL to run it."; \
		echo "********************************************************************"; \
	fi

# Performance against the bare stack (needs PostgreSQL at PG_TEST_URL and Debian's wrk); see docs/performance.md.
bench: install
	@command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install wrk"; exit 2; }
	$(BIN)/python bench/http_bench.py --database-url "$(PG_TEST_URL)"

clean:
	rm -rf $(VENV) .pytest_cache
