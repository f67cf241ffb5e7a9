"""Every palaestra env id, registered with Gymnasium on import, grouped by family."""

from palaestra.envs.registration import list_envs, register_env

__all__ = ["list_envs", "register_env"]

# --- Classical control: robust and stochastic variants -------------------------------------------
register_env(
    "RobustCartPole-v0",
    "palaestra.envs.control.robust_cartpole:RobustCartPoleEnv",
    "CartPole-v1 with exposed masses/length/gravity/force, perturbations and actuator noise",
    vector_entry_point="palaestra.envs.control.robust_cartpole:RobustCartPoleVectorEnv",
    max_episode_steps=500,
    reward_threshold=475.0,
)
register_env(
    "RobustPendulum-v0",
    "palaestra.envs.control.robust_pendulum:RobustPendulumEnv",
    "Pendulum-v1 with exposed gravity/mass/length/actuator gain, perturbations and actuator noise",
    max_episode_steps=200,
)

# --- Text and tool-agent environments (optional extra: pip install "palaestra[text]") ------------
register_env(
    "ToolSearch-v0",
    "palaestra.envs.text.tool_search:ToolSearchEnv",
    "Multi-turn QA with a BM25 search tool (Search-R1 tags) over a generated fictional world or your own corpus",
)
register_env(
    "TextWorld-v0",
    "palaestra.envs.text.textworld_env:TextWorldEnv",
    "Gymnasium 1.x adapter over generated (or given) TextWorld text-adventure games",
)

# --- Offline datasets: D4RL-style ids over Minari datasets (palaestra.envs.offline) ----------------
_OFFLINE_TASKS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "pendulum": "Pendulum-v1",
}
for _task, _base in _OFFLINE_TASKS.items():
    for _kind in ("random", "medium", "expert", "medium-replay", "medium-expert"):
        register_env(
            f"{_task}-{_kind}-v0",
            "palaestra.envs.offline.env:make_offline_env",
            f"{_base} with D4RL's get_dataset(): palaestra's '{_kind}' dataset (Minari, generated on first use)",
            kwargs={"task": _task, "kind": _kind},
            # the returned env is a wrapper around gym.make(base) (time limit and checks included), kept outermost
            # so that env.get_dataset() works as in D4RL
            order_enforce=False,
            disable_env_checker=True,
        )
del _task, _base, _kind
register_env(
    "Offline-v0",
    "palaestra.envs.offline.env:make_collected_env",
    "any Gymnasium env with D4RL's get_dataset() over the dataset `palaestra collect --env ID --kind KIND` made "
    "(kwargs env_id, kind)",
    order_enforce=False,
    disable_env_checker=True,
)

# --- Online-agent testbeds: linear robust MDPs, option pricing, tabular gridworlds ---------------
register_env(
    "LinearRobustMDP-v0",
    "palaestra.envs.control.linear_robust_mdp:LinearRobustMDPEnv",
    "5-state d-rectangular linear MDP (d=4, 16 actions, H=3) whose goal transition can be shifted to the fail state",
)
register_env(
    "AmericanPutOption-v0",
    "palaestra.envs.control.american_put:AmericanPutOptionEnv",
    "American put on a binomial price with configurable drift (hold/exercise, H=20), hat-function features",
)


def _register_gridworlds() -> None:
    from palaestra.envs.control.gridworlds import GRIDWORLDS

    for name, spec in GRIDWORLDS.items():
        register_env(
            f"StickyGrid-{name}-v0",
            "palaestra.envs.control.gridworlds:TabularGridworldEnv",
            f"tabular gridworld with sticky actions (p=0.25): {spec.description}",
            kwargs={"layout": name},
            max_episode_steps=spec.horizon,
        )


_register_gridworlds()
