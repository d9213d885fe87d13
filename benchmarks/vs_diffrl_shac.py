"""SHAC's pieces (`stablebptt.training.shac`) against DiffRL's own code, run with PyTorch on the CPU in float64.

DiffRL (NVlabs/DiffRL, the reference implementation of SHAC) is not vendored here: its licence allows
non-commercial use only. Give the script a checkout of it (``git clone https://github.com/NVlabs/DiffRL``) and a
CPU build of PyTorch (``pip install torch``); neither is a dependency of stablebptt. The script compiles the methods
``compute_actor_loss``, ``compute_target_values`` and ``compute_critic_loss`` of the checkout's
``algorithms/shac.py`` on their own (the module's imports of dflex, its environments and tensorboardX are not run),
imports ``models/critic.py`` (``CriticMLP``) and ``utils/dataset.py`` (``CriticDataset``), and transcribes from
``SHAC.train`` only the loops that are inline there (the critic's passes, the actor's clipping and Adam step, the
target critic's update: a few lines each, with PyTorch's own ``clip_grad_norm_`` and ``Adam``). DiffRL's buffers
are float32; its methods run here with ``torch.float32`` read as float64, so that the two sides agree to float64
rounding wherever they compute the same thing.

Both sides train a small task that resets itself (a point in 3-D drifting under its controls; an episode
terminates where the point leaves [-1.5, 1.5]^3 and is truncated at 4 steps; clocks spread, so that episodes end
inside the window by termination and by truncation) with a linear-tanh actor and DiffRL's critic, and compare:

1. ``actor loss`` and ``actor gradient``: DiffRL's ``compute_actor_loss`` through a PyTorch twin of the task and
   its ``backward()``, against `training.shac.window_loss` under `core.value_and_grad` with R (SHAC as published);
2. ``rewards``, ``values``, ``episode ends``: DiffRL's buffers ``rew_buf``, ``next_values``, ``done_mask``
   against the window's own (``done_mask``'s last row is 1 in DiffRL: every environment ends there);
3. ``TD-lambda targets``: ``compute_target_values`` against `td_lambda_targets`;
4. ``critic network``: DiffRL's ``CriticMLP`` holding the weights of `nn.NormedMLP` (`critic_net(..., "diffrl")`);
5. ``critic fit``: 16 passes of 4 minibatches in DiffRL's order (``CriticDataset``, ``compute_critic_loss``,
   ``clip_grad_norm_`` to 1, Adam with betas 0.7 and 0.95) against `_fit_critic` with ``critic_order="steps"``;
   and ``critic fit loss``, the last pass's mean loss;
6. ``actor step``: DiffRL's clipping to norm 1 and Adam step against `TrainSettings.transform` of `diffrl_recipe`;
7. ``target critic``: DiffRL's Polyak update against `polyak`.

PyTorch's ``clip_grad_norm_`` scales by ``max_norm / (norm + 1e-6)``, Optax's ``clip_by_global_norm`` by
``max_norm / norm``: a clipped step differs by about 1e-6 of itself (the ``clipped`` column says where clipping
acted; Adam's normalisation divides most of that out: such rows agree to about 1e-9). Each row gives the largest
absolute difference, the largest magnitude compared, their ratio, and whether the ratio is within the row's
tolerance (1e-10; 1e-5 where clipping acted). The exit status is 1 if a row is not, 2 on bad input.

    python benchmarks/vs_diffrl_shac.py --diffrl ~/DiffRL      # writes benchmarks/results/vs_diffrl_shac.json

Not compared, because DiffRL's form differs from ours on purpose or needs its simulator: the stochastic actor and
``obs_rms`` on the actor's inputs (stablebptt keeps the task's controller and inputs; its ``critic_normalize``
standardises the critic's inputs, with Brax's statistics, tested against Brax), ``ret_rms`` and ``rew_scale``
(off in DiffRL's SHAC configurations), and dflex's environments.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import io
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import _common
import numpy as np

METHODS = ("compute_actor_loss", "compute_target_values", "compute_critic_loss")
TOLERANCE, CLIPPED_TOLERANCE = 1e-10, 1e-5
STEPS, ENVS, EPISODE = 8, 6, 4  # the window, the environments, the episode's steps
GAMMA, LAM, ALPHA, ACTOR_LR, CRITIC_LR = 0.99, 0.95, 0.2, 2e-3, 2e-4


def fail(message: str) -> None:
    print(f"vs_diffrl_shac: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_diffrl(root: Path) -> tuple[type, Any, Any, dict[str, str]]:
    """DiffRL's three methods as a class of their own, its ``CriticMLP`` and ``CriticDataset``, and where they came
    from (the checkout's commit and ``algorithms/shac.py``'s SHA-256)."""
    import torch

    source = root / "algorithms" / "shac.py"
    if not source.is_file():
        fail(f"{root} is not a checkout of NVlabs/DiffRL (no algorithms/shac.py); give --diffrl the clone's folder")
    text = source.read_text()
    shac = next(
        (n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "SHAC"),
        None,
    )
    found = {n.name: n for n in (shac.body if shac else []) if isinstance(n, ast.FunctionDef)}
    missing = [m for m in METHODS if m not in found]
    if missing:
        fail(f"{source} has no SHAC.{missing[0]}: this script reads DiffRL's release of 2022 (commit a4c0dd1)")
    module = ast.Module(body=[ast.ClassDef("DiffRLMethods", [], [], [found[m] for m in METHODS], [])], type_ignores=[])
    # torch.float32 read as float64: DiffRL's buffers and accumulators in float64, everything else as it is
    torch64 = types.ModuleType("torch")
    torch64.__getattr__ = lambda name: torch.float64 if name == "float32" else getattr(torch, name)  # type: ignore
    namespace: dict[str, Any] = {"torch": torch64, "copy": __import__("copy")}
    exec(compile(ast.fix_missing_locations(module), str(source), "exec"), namespace)
    sys.path.insert(0, str(root))
    with contextlib.redirect_stdout(io.StringIO()):  # CriticMLP prints itself
        from models.critic import CriticMLP  # type: ignore[import-not-found]
        from utils.dataset import CriticDataset  # type: ignore[import-not-found]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    origin = {
        "commit": commit.stdout.strip() if commit.returncode == 0 else "unknown",
        "shac_py_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    return namespace["DiffRLMethods"], CriticMLP, CriticDataset, origin


# ------------------------------------------------------------------------------------------------ the task, twice


def jax_task() -> Any:
    import jax
    import jax.numpy as jnp

    from stablebptt.tasks import EpisodeEnds, Task

    class Drift(Task):
        """A point in 3-D drifting under its controls, resetting itself as Brax's training wrapper does."""

        name: ClassVar[str] = "drift"
        horizon: int = STEPS

        @property
        def resets(self) -> bool:
            return True

        def sample(self, key: Any, n: int) -> Any:
            p = jax.random.uniform(key, (n, 3), minval=-1.0, maxval=1.0)
            zeros = jnp.zeros((n,), bool)
            return {"p": p, "first": p, "last": p, "t": jnp.zeros((n,), jnp.int32), "done": zeros, "trunc": zeros}

        def init_controller(self, key: Any) -> Any:
            k1, k2 = jax.random.split(key)
            return {"w": jax.random.normal(k1, (3, 3)) * 0.8, "b": jax.random.normal(k2, (3,)) * 0.3}

        def controller(self, params: Any, x: Any) -> Any:
            return jnp.tanh(x["p"] @ params["w"] + params["b"])

        def step(self, x: Any, c: Any) -> Any:
            p = x["p"] + 0.4 * c + 0.3 * jnp.sin(2.0 * x["p"])
            t = x["t"] + 1
            terminated = jnp.any(jnp.abs(p) > 1.5, axis=1)
            truncated = (t >= EPISODE) & ~terminated
            done = terminated | truncated
            fresh = jnp.where(done[:, None], x["first"], p)
            return {"p": fresh, "first": x["first"], "last": p, "t": jnp.where(done, 0, t), "done": done,
                    "trunc": truncated}  # fmt: skip

        def reward(self, x: Any, c: Any, x_next: Any) -> Any:
            return -jnp.sum(x_next["last"] ** 2, axis=1) - 0.1 * jnp.sum(c**2, axis=1)

        def critic_input(self, x: Any) -> Any:
            return x["p"]

        def episode_ends(self, x_next: Any) -> Any:
            return EpisodeEnds(x_next["done"], x_next["trunc"], x_next["last"])

        def loss(self, states: Any, controls: Any) -> Any:
            return jnp.mean(jnp.sum(states["p"][1:] ** 2, axis=(0, 2)))

    return Drift()


def torch_env(p0: np.ndarray, clocks: np.ndarray) -> Any:
    """The same task as DiffRL's environments present it: ``step(actions)`` with the tanh already applied returns
    the observations after the resets, the rewards, the ends and ``extra_info["obs_before_reset"]``."""
    import torch

    class Env:
        num_envs, num_obs = p0.shape

        def __init__(self) -> None:
            self.first = torch.tensor(p0)
            self.p = torch.tensor(p0)
            self.t = torch.tensor(clocks)

        def initialize_trajectory(self) -> Any:
            self.p = self.p.clone().detach()  # DiffRL's environments cut the gradient between windows here
            return self.p

        def step(self, actions: Any) -> Any:
            p = self.p + 0.4 * actions + 0.3 * torch.sin(2.0 * self.p)
            self.t = self.t + 1
            terminated = torch.any(torch.abs(p) > 1.5, dim=1)
            done = terminated | ((self.t >= EPISODE) & ~terminated)
            reward = -torch.sum(p**2, dim=1) - 0.1 * torch.sum(actions**2, dim=1)
            self.p = torch.where(done[:, None], self.first, p)
            self.t = torch.where(done, torch.zeros_like(self.t), self.t)
            return self.p, reward, done, {"obs_before_reset": p, "termination": terminated}

    return Env()


class Meter:
    def update(self, value: Any) -> None:
        pass


def diffrl_agent(methods: type, env: Any, actor: Any, target_critic: Any, clocks: np.ndarray) -> Any:
    """An object holding what DiffRL's methods read and write (its names), as ``SHAC.__init__`` and
    ``SHAC.train`` set them, with DiffRL's methods bound to it."""
    import torch

    agent = methods()
    f64, n = torch.float64, env.num_envs
    agent.__dict__.update(
        env=env, actor=actor, target_critic=target_critic, device="cpu", num_envs=n, steps_num=STEPS,
        gamma=GAMMA, lam=LAM, critic_method="td-lambda", obs_rms=None, ret_rms=None, rew_scale=1.0,
        max_episode_length=EPISODE, step_count=0, ret=torch.zeros(n, dtype=f64),
        obs_buf=torch.zeros((STEPS, n, env.num_obs), dtype=f64), rew_buf=torch.zeros((STEPS, n), dtype=f64),
        done_mask=torch.zeros((STEPS, n), dtype=f64), next_values=torch.zeros((STEPS, n), dtype=f64),
        target_values=torch.zeros((STEPS, n), dtype=f64), episode_length=torch.tensor(clocks),
        episode_loss=torch.zeros(n, dtype=f64), episode_discounted_loss=torch.zeros(n, dtype=f64),
        episode_gamma=torch.ones(n, dtype=f64), episode_loss_meter=Meter(),
        episode_discounted_loss_meter=Meter(), episode_length_meter=Meter(), episode_loss_his=[],
        episode_discounted_loss_his=[], episode_length_his=[],
    )  # fmt: skip
    return agent


# ------------------------------------------------------------------------------------------------ the comparison


def compare(name: str, ours: Any, theirs: Any, clipped: bool = False) -> dict[str, Any]:
    def flat(values: Any) -> np.ndarray:  # arrays, numbers or PyTorch tensors
        return np.concatenate([np.ravel(np.asarray(getattr(x, "detach", lambda x=x: x)(), np.float64)) for x in values])

    a, b = flat(ours), flat(theirs)
    if a.shape != b.shape:
        raise SystemExit(f"vs_diffrl_shac: {name}: {a.size} numbers here, {b.size} in DiffRL's")
    error, scale = float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))
    ratio = error / max(scale, 1e-300)
    tolerance = CLIPPED_TOLERANCE if clipped else TOLERANCE
    return {"piece": name, "numbers": int(a.size), "max_abs_error": error, "max_abs": scale, "ratio": ratio,
            "clipped": clipped, "tolerance": tolerance, "agrees": bool(ratio <= tolerance)}  # fmt: skip


def run(root: Path, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import optax
    import torch

    import stablebptt as sb
    from stablebptt.training import TrainSettings
    from stablebptt.training.shac import (
        _fit_critic,
        critic_net,
        critic_optimizer,
        diffrl_recipe,
        polyak,
        td_lambda_targets,
        window_loss,
    )

    torch.set_default_dtype(torch.float64)
    methods, critic_mlp, critic_dataset, origin = load_diffrl(root)
    task = jax_task()
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = task.init_controller(k1)
    clocks = np.arange(ENVS) % EPISODE
    x0 = {**task.sample(k2, ENVS), "t": jnp.asarray(clocks, jnp.int32)}
    settings = TrainSettings(**diffrl_recipe(lr=ACTOR_LR, critic_lr=CRITIC_LR, batch_size=ENVS, epochs=10,
                                             window=STEPS, lam=LAM, gamma=GAMMA, target_alpha=ALPHA))  # fmt: skip
    target = critic_net(3, k3, settings.critic_network)
    critic = critic_net(3, k4, settings.critic_network)

    # ours: SHAC's objective of the window and its R gradient, the window's buffers, the targets
    loss = window_loss(task, target, None, None, EPISODE, GAMMA)
    states, _ = sb.rollout(task.step, task.controller, params, x0, STEPS)
    ends = np.asarray(states["done"][1:])
    last_step_terminations = ends & ~np.asarray(states["trunc"][1:]) & (np.asarray(states["t"][:-1]) == EPISODE - 1)
    if not (ends.any() and np.asarray(states["trunc"][1:]).any()) or last_step_terminations.any():
        fail(
            f"seed {seed} gives a window without both kinds of episode end, or with a termination on an episode's "
            "last step (DiffRL's clock counts that as a truncation, the task's flags do not); try another --seed"
        )
    value_and_grad = sb.value_and_grad(loss, task.step, task.controller, STEPS, "R", has_aux=True)
    value, grad, info = value_and_grad(params, x0)
    rewards, values, seen, _, ended = info["aux"]
    targets = td_lambda_targets(rewards, values, ended, GAMMA, LAM)

    # DiffRL's: the same actor, target critic and environments in PyTorch
    w = torch.tensor(np.asarray(params["w"]), requires_grad=True)
    b = torch.tensor(np.asarray(params["b"]), requires_grad=True)

    class Actor(torch.nn.Module):
        def forward(self, obs: Any, deterministic: bool = False) -> Any:
            return obs @ w + b  # DiffRL's environments get tanh of the actor's output

    def to_torch(net: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            module = critic_mlp(3, {"critic_mlp": {"units": [64, 64], "activation": "elu"}}, device="cpu")
        linears = [m for m in module.critic if isinstance(m, torch.nn.Linear)]
        norms = [m for m in module.critic if isinstance(m, torch.nn.LayerNorm)]
        with torch.no_grad():
            for mine, theirs in zip(net.layers, linears, strict=True):
                theirs.weight.copy_(torch.tensor(np.asarray(mine.weight)))
                theirs.bias.copy_(torch.tensor(np.asarray(mine.bias)))
            for mine, theirs in zip(net.norms, norms, strict=True):
                theirs.weight.copy_(torch.tensor(np.asarray(mine.weight)))
                theirs.bias.copy_(torch.tensor(np.asarray(mine.bias)))
        return module

    agent = diffrl_agent(
        methods, torch_env(np.asarray(x0["p"]), clocks), Actor(), to_torch(target), clocks.astype(np.int64)
    )
    their_loss = agent.compute_actor_loss(deterministic=True)
    their_loss.backward()
    agent.compute_target_values()
    rows = [
        compare("actor loss", [value], [their_loss.item()]),
        compare("actor gradient", [grad["b"], grad["w"]], [b.grad.numpy(), w.grad.numpy()]),
        compare("rewards", [rewards], [agent.rew_buf.numpy()]),
        compare("values", [values], [agent.next_values.numpy()]),
        compare("episode ends", [np.asarray(ended)[:-1]], [agent.done_mask.numpy()[:-1]]),
        compare("TD-lambda targets", [targets], [agent.target_values.numpy()]),
    ]
    probe = np.random.default_rng(seed).normal(size=(32, 3))
    rows.append(
        compare("critic network", [jax.vmap(target)(jnp.asarray(probe))], [agent.target_critic(torch.tensor(probe))])
    )

    # one update's critic fit (SHAC.train's loop over critic_iterations, with DiffRL's dataset and loss)
    their_critic = to_torch(critic)
    optimizer = torch.optim.Adam(their_critic.parameters(), betas=(0.7, 0.95), lr=CRITIC_LR)
    agent.critic = their_critic
    dataset = critic_dataset(ENVS * STEPS // settings.critic_batches, agent.obs_buf, agent.target_values,
                             drop_last=False)  # fmt: skip
    clipped_critic = False
    for _ in range(settings.critic_iterations):
        total, count = 0.0, 0
        for i in range(len(dataset)):
            optimizer.zero_grad()
            batch_loss = agent.compute_critic_loss(dataset[i])
            batch_loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(their_critic.parameters(), 1.0)
            clipped_critic |= bool(norm > 1.0)
            optimizer.step()
            total, count = total + batch_loss.item(), count + 1
    their_fit_loss = total / count
    mine, static = eqx.partition(critic, eqx.is_inexact_array)
    tx = critic_optimizer(settings)
    fitted, _, fit_loss = _fit_critic(mine, tx.init(mine), static, tx, seen, targets, settings, jax.random.key(0))
    fitted_net = eqx.combine(fitted, static)
    theirs = [m for m in their_critic.critic if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm))]
    ours = [x for pair in zip(fitted_net.layers, (*fitted_net.norms, None)) for x in pair if x is not None]
    rows.append(compare("critic input (obs_buf)", [seen], [agent.obs_buf.numpy()]))
    rows.append(
        compare(
            "critic fit",
            [leaf for m in ours for leaf in (m.weight, m.bias)],
            [p.detach().numpy() for m in theirs for p in (m.weight, m.bias)],
            clipped_critic,
        )
    )
    rows.append(compare("critic fit loss", [fit_loss], [their_fit_loss], clipped_critic))

    # the actor's step (SHAC.train's actor_closure and step) and the target critic's update
    actor_optimizer = torch.optim.Adam([w, b], betas=(0.7, 0.95), lr=ACTOR_LR)
    norm = torch.nn.utils.clip_grad_norm_([w, b], 1.0)
    actor_optimizer.step()
    tx = settings.transform()
    updates, _ = tx.update(grad, tx.init(params), params)
    stepped = optax.apply_updates(params, updates)
    rows.append(compare("actor step", [stepped["b"], stepped["w"]], [b.detach().numpy(), w.detach().numpy()],
                        bool(norm > 1.0)))  # fmt: skip
    their_target = to_torch(target)
    with torch.no_grad():  # SHAC.train: "update target critic"
        for param, param_targ in zip(their_critic.parameters(), their_target.parameters(), strict=True):
            param_targ.data.mul_(ALPHA)
            param_targ.data.add_((1.0 - ALPHA) * param.data)
    moved = eqx.combine(polyak(eqx.filter(target, eqx.is_inexact_array), fitted, ALPHA), static)
    rows.append(
        compare(
            "target critic",
            [jax.vmap(moved)(jnp.asarray(probe))],
            [their_target(torch.tensor(probe)).detach().numpy()],
            clipped_critic,
        )
    )
    origin["torch"] = torch.__version__
    return rows, origin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffrl", type=Path, required=True, help="a checkout of NVlabs/DiffRL")
    parser.add_argument(
        "--seed", type=int, default=2, help="the window's seed (default: 2, the first with both kinds of episode end)"
    )
    parser.add_argument("--quick", action="store_true", help="the same run (it takes seconds); for the schema")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("PyTorch is not installed; install its CPU build (pip install torch) to run DiffRL's code")
    rows, origin = run(args.diffrl.expanduser(), args.seed)
    _common.print_table(
        ["piece", "numbers", "max |difference|", "max |value|", "ratio", "clipped", "agrees"],
        [[r["piece"], r["numbers"], f"{r['max_abs_error']:.2e}", f"{r['max_abs']:.3g}", f"{r['ratio']:.1e}",
          r["clipped"], r["agrees"]] for r in rows],
    )  # fmt: skip
    settings = {"steps": STEPS, "envs": ENVS, "episode": EPISODE, "gamma": GAMMA, "lam": LAM, "alpha": ALPHA,
                "actor_lr": ACTOR_LR, "critic_lr": CRITIC_LR, "seed": args.seed}  # fmt: skip
    payload = _common.result("vs_diffrl_shac", quick=args.quick, settings=settings, rows=rows, diffrl=origin)
    _common.write_json(args.out or _common.default_output(__file__, args.quick), payload)
    return 0 if all(r["agrees"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
