"""Brax's ``apg.train`` and stablebptt's `apg_recipe` with the same arguments and seed, on inverted_double_pendulum
(MJX, one solver iteration) at a small size: 4 environments, windows of 8 steps, episodes of 20, 6 updates in 2
epochs. Prints one JSON line: both evaluation curves (Brax's evaluator, APG's evaluation key), the largest
difference between the final networks and how far training moved ours. Run by tests/experiments/test_apg.py.

``apg.train`` runs under this JAX with `jax.device_put_replicated` supplied for one device
(`stablebptt.integrations.brax.brax_training_loops`)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp


def main() -> None:
    from brax.training import acting
    from brax.training.agents.apg import train as apg

    from stablebptt.experiments.apg import apg_recipe
    from stablebptt.integrations.brax import APGNetwork, brax_training_loops, environment, wrapped_environment
    from stablebptt.training import Trainer
    from stablebptt.training.stream import apg_eval_key

    env, seed, lr = "inverted_double_pendulum", 5, 3e-4
    sizes = {"episode_length": 20, "policy_updates": 6, "horizon_length": 8, "num_envs": 4, "num_evals": 3}
    theirs: list[float] = []
    with brax_training_loops():
        _, (_, final), _ = apg.train(
            environment=environment(env, "mjx", 1),
            **sizes,
            num_eval_envs=4,
            seed=seed,
            learning_rate=lr,
            deterministic_eval=True,
            progress_fn=lambda it, metrics: theirs.append(float(metrics["eval/episode_reward"])),
        )

    task, settings = apg_recipe(env, **sizes, learning_rate=lr, seed=seed, backend="mjx")
    trainer = Trainer(task, settings)
    evaluator = acting.Evaluator(
        wrapped_environment(env, "mjx", 1, sizes["episode_length"]),
        lambda params, deterministic=True: task.policy(params),
        num_eval_envs=4,
        episode_length=sizes["episode_length"],
        action_repeat=1,
        key=apg_eval_key(seed),
    )

    def evaluate(state) -> float:
        return float(evaluator.run_evaluation(trainer.params(state), {})["eval/episode_reward"])

    ours = [evaluate(trainer.initial)]
    outcome = trainer.run(
        trainer.initial, epochs=settings.epochs, on_epoch=lambda epoch, state, row: ours.append(evaluate(state))
    )
    expected = APGNetwork(
        task.observation_size, task.action_size, task.hidden, key=jax.random.PRNGKey(0), brax_params=final
    )
    got, initial = trainer.params(outcome.state).mlp, trainer.params(trainer.initial).mlp
    leaves = list(zip(jax.tree.leaves(got), jax.tree.leaves(expected), jax.tree.leaves(initial), strict=True))
    print(
        json.dumps(
            {
                "theirs": theirs,
                "ours": ours,
                "max_param_diff": max(float(jnp.max(jnp.abs(a - b))) for a, b, _ in leaves),
                "moved": max(float(jnp.max(jnp.abs(a - a0))) for a, _, a0 in leaves),
            }
        )
    )


if __name__ == "__main__":
    main()
