# Container images, the compose stack and the offline (no registry) build path; included by the Makefile.
# docs/containers.md describes both paths (public python:3.11-slim-bookworm, or a local Debian base).

PLASMA_TAG ?= latest
WHEELHOUSE ?= wheelhouse
# Which base the images start from: empty = automatic (the public image if present or pullable, else a local
# Debian bookworm image built without any registry). E.g. PLASMA_BASE_IMAGE=plasma/debian-python:bookworm.
PLASMA_BASE_IMAGE ?=
PLASMA_LOCAL_BASE_IMAGE ?= plasma/debian-python:bookworm
# The classic builder works without a registry or buildx; DOCKER_BUILDKIT=1 switches to BuildKit.
DOCKER_BUILDKIT ?= 0
COMPOSE_PROJECT_NAME ?= plasma
# Workflow recipe for demo-compose ("default" like `make demo`, "quick-check" like the compose e2e test).
RECIPE ?= default
export PLASMA_TAG WHEELHOUSE PLASMA_BASE_IMAGE PLASMA_LOCAL_BASE_IMAGE DOCKER_BUILDKIT COMPOSE_PROJECT_NAME

COMPOSE := deploy/compose.sh
# Host ports the stack publishes (docker-compose.yml reads the same variables).
PLASMA_SIMULATOR_PORT ?= 50051
PLASMA_TRAINER_PORT ?= 50052
PLASMA_COMPILER_PORT ?= 50053
PLASMA_EDGE_PORT ?= 50054
export PLASMA_SIMULATOR_PORT PLASMA_TRAINER_PORT PLASMA_COMPILER_PORT PLASMA_EDGE_PORT

# Dependency wheels: downloaded once per change of pyproject.toml, then reused (offline).
$(WHEELHOUSE)/.deps: pyproject.toml scripts/wheelhouse.sh scripts/requirements.py
	scripts/wheelhouse.sh deps
	touch $@

.PHONY: wheelhouse
wheelhouse: $(WHEELHOUSE)/.deps ## Host-side wheels for the images (downloaded once per change of the dependencies)

.PHONY: base-image
base-image: ## Build plasma/debian-python:bookworm from Debian packages (no registry): the offline base
	scripts/build_base_image.sh $(PLASMA_LOCAL_BASE_IMAGE)

.PHONY: images
images: wheelhouse ## Build the simulator, trainer, compiler, edge and registry images from the wheelhouse (offline)
	deploy/build_images.sh

.PHONY: image-sizes
image-sizes: ## Print the sizes of the Plasma images
	@docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep '^plasma/' | sort

.PHONY: up
up: images ## Build the images and start the compose stack, waiting until every service is healthy
	$(COMPOSE) up-wait
	$(COMPOSE) ps

.PHONY: down
down: ## Stop and remove the compose stack (named volumes, i.e. the stores, are kept)
	$(COMPOSE) down --remove-orphans

.PHONY: down-volumes
down-volumes: ## Stop the compose stack and delete its volumes (datasets, models, runs, packets)
	$(COMPOSE) down --volumes --remove-orphans

.PHONY: up-cluster
up-cluster: images ## The compose stack with a Ray head and two Ray workers that run the simulator's batches (docs/scaling.md)
	PLASMA_CLUSTER=1 $(COMPOSE) up-wait
	PLASMA_CLUSTER=1 $(COMPOSE) ps

.PHONY: down-cluster
down-cluster: ## Stop and remove the stack started by up-cluster (volumes kept)
	PLASMA_CLUSTER=1 $(COMPOSE) down --remove-orphans

# Where `make compose-certs` puts the stack's client certificates for the host (one folder per role).
COMPOSE_CERTS_DIR ?= var/compose-certs
ROLE ?= operator

.PHONY: compose-certs
compose-certs: ## Copy the running stack's operator client certificate and CA to COMPOSE_CERTS_DIR/operator (ROLE=reader)
	deploy/client_certs.sh $(ROLE) $(COMPOSE_CERTS_DIR)/$(ROLE)

.PHONY: demo-compose
demo-compose: $(STAMP) up ## `make demo`'s workflow on CartPole-v1 against the compose stack (RECIPE=quick-check for a quick one)
	deploy/client_certs.sh operator $(COMPOSE_CERTS_DIR)/operator >/dev/null
	$(BIN)/plasma run --simulator 127.0.0.1:$(PLASMA_SIMULATOR_PORT) --trainer 127.0.0.1:$(PLASMA_TRAINER_PORT) \
	  --compiler 127.0.0.1:$(PLASMA_COMPILER_PORT) --edge 127.0.0.1:$(PLASMA_EDGE_PORT) \
	  --tls-ca $(COMPOSE_CERTS_DIR)/operator/ca.pem --tls-cert $(COMPOSE_CERTS_DIR)/operator/client.pem \
	  --tls-key $(COMPOSE_CERTS_DIR)/operator/client-key.pem --env CartPole-v1 --recipe $(RECIPE)
	@echo "the edge container is serving the packet on 127.0.0.1:$(PLASMA_EDGE_PORT); 'make down' stops the stack"

.PHONY: e2e
e2e: $(STAMP) images ## Only the container end-to-end tests (compose stack, edge container with device limits)
	$(BIN)/python -m pytest tests/e2e
