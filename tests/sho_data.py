"""Exact simple-harmonic-oscillator transitions shared by the model and inference tests."""

import torch


def sho_transitions(T=5, points=4, dt=0.2, seed=0, dtype=torch.float64):
    """``(states, next_states)`` of shape ``(T, points - 1, 2)``: the exact SHO flow rotates
    phase space by the angle ``dt`` per step."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(T, 2, generator=g, dtype=dtype)
    t = torch.arange(points, dtype=dtype) * dt
    q0, p0 = x0[:, :1], x0[:, 1:]
    traj = torch.stack(
        [q0 * torch.cos(t) + p0 * torch.sin(t), -q0 * torch.sin(t) + p0 * torch.cos(t)], -1
    )
    return traj[:, :-1], traj[:, 1:]
