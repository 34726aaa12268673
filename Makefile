# concoord's two halves, as ConCoord's server and client bundles.
# `make` lists the targets.

CARGO ?= cargo
DIST  ?= dist

.PHONY: help server client check-client test demo clean

help:
	@echo "make server        build the replica binary (consensus included) into $(DIST)/server/"
	@echo "make client        build the client-only binary (call, shell, status, bench) into $(DIST)/client/"
	@echo "make check-client  assert the client-only build compiles no consensus code"
	@echo "make test          run the whole test suite"
	@echo "make demo          run the 3-replica failover demo"
	@echo "make clean         remove $(DIST)/"

server:
	$(CARGO) build --profile dist --bin concoord
	mkdir -p $(DIST)/server
	cp target/dist/concoord $(DIST)/server/concoord
	@echo "built $(DIST)/server/concoord"

client: check-client
	$(CARGO) build --profile dist --no-default-features --bin concoord --target-dir target/client-only
	mkdir -p $(DIST)/client
	cp target/client-only/dist/concoord $(DIST)/client/concoord
	@echo "built $(DIST)/client/concoord (no replica subcommand, no consensus code)"

check-client:
	@if $(CARGO) tree --no-default-features -p concoord -e normal | grep -q "concoord-actors"; then \
		echo "the client-only build depends on concoord-actors (consensus)"; exit 1; \
	else echo "client-only build: concoord-actors is not in the dependency tree"; fi

test:
	$(CARGO) test --workspace

demo:
	$(CARGO) run --release --example quickstart

clean:
	rm -rf $(DIST)
