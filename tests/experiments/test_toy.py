from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stablebptt import combine
from stablebptt.cli import main
from stablebptt.experiments import toy


def _unrolled_loss(theta, x0=-0.3):
    x = jnp.asarray(x0, theta.dtype)
    for _ in range(4):
        x = x + theta[0] * x**2 + theta[1] * x
    return 0.5 * (x - 2.0) ** 2


def test_toy_fields_come_from_the_library(x64):
    theta = jnp.array([0.7, -1.2])
    value, g_r = jax.jit(toy.toy_field("R"))(theta)
    assert float(value) == pytest.approx(float(_unrolled_loss(theta)))
    np.testing.assert_allclose(g_r, jax.grad(_unrolled_loss)(theta), rtol=1e-12)
    _, g_m = jax.jit(toy.toy_field("M"))(theta)
    assert not np.allclose(g_m, g_r)  # stopping the network's input Jacobian changes the field
    _, g_c = jax.jit(toy.toy_field("C"))(theta)
    np.testing.assert_array_equal(g_c, combine(g_m, g_r))


def test_modified_field_vanishes_at_a_global_minimum(x64):
    """Along theta = (s, 0), x_{n+1} = x_n + s x_n^2; bisection finds s with x_4 = 2, a global minimum, where
    the modified and combined updates vanish as the gradient does (method.md §1)."""

    def x4(s):
        x = -0.3
        for _ in range(4):
            x = x + s * x * x
        return x

    lo, hi = 0.0, 10.0
    assert (x4(lo) - 2) * (x4(hi) - 2) < 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if (x4(lo) - 2) * (x4(mid) - 2) > 0 else (lo, mid)
    theta = jnp.array([lo, 0.0])
    for method in ("R", "M", "C"):
        value, update = jax.jit(toy.toy_field(method))(theta)
        assert float(value) < 1e-20
        np.testing.assert_allclose(update, 0.0, atol=1e-9)


def test_field_on_grid_layout():
    t1, t2, loss, u1, u2 = toy.field_on_grid(toy.rotation_fields()["divergence"], n=5, limit=2.0)
    np.testing.assert_allclose(t1, [-2, -1, 0, 1, 2])
    # rows along theta2, columns along theta1; the gradient of |theta|^2 is 2 theta
    np.testing.assert_allclose(u1, 2 * t1[None, :] * np.ones((5, 1)), atol=1e-6)
    np.testing.assert_allclose(u2, 2 * t2[:, None] * np.ones((1, 5)), atol=1e-6)
    np.testing.assert_allclose(loss, t1[None, :] ** 2 + t2[:, None] ** 2, atol=1e-5)


def test_rotation_illustration_matches_the_published_description():
    """Divergence converges within ~60 Adam iterations, the rotated field stalls around 1, the combination
    gets to 1e-1..1e-2 by iteration 200 (issue 3)."""
    paths = {
        name: toy.adam_path(f, toy.ROTATION_START, 200, toy.ROTATION_LR) for name, f in toy.rotation_fields().items()
    }
    assert paths["divergence"].losses[0] == pytest.approx(20.0)
    assert paths["divergence"].losses[60] < 1e-2
    assert 0.3 < paths["+ rotation"].losses[200] < 10 and np.min(paths["+ rotation"].losses[100:]) > 0.3
    assert paths["combination"].losses[200] < 1e-1
    assert paths["combination"].losses[60] > paths["divergence"].losses[60]
    assert paths["divergence"].thetas.shape == (201, 2)


@pytest.mark.slow  # 6-18 s; the README's test command keeps under 6 minutes
def test_toy_command_writes_its_pngs(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["toy", "--out", str(out)]) == 0
    for name in ("toy_recurrent.png", "toy_rotation.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    printed = capsys.readouterr().out
    assert "recurrent:" in printed and "rotation:" in printed and "@200" in printed


def test_toy_out_must_be_a_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["toy", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err
