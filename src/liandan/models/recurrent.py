"""Recurrent sequence models: Elman RNN, LSTM, GRU (PyTorch's layers) and a peephole LSTM.

- Elman RNN (Elman 1990): ``h_t = tanh(W x_t + U h_{t-1} + b)``.
- LSTM (Hochreiter & Schmidhuber 1997, forget gate: Gers, Schmidhuber & Cummins 2000): a cell
  state updated additively, ``c_t = f ⊙ c_{t-1} + i ⊙ g``, so gradients survive long gaps.
- GRU (Cho et al. 2014): update and reset gates, no separate cell state.
- Peephole LSTM (Gers & Schmidhuber 2000, "Recurrent nets that time and count"; Gers,
  Schraudolph & Schmidhuber 2002): the gates also *see the cell state* through diagonal
  weights, ``i = σ(W_i x + U_i h + p_i ⊙ c_{t-1} + b_i)``, ``f`` likewise, and the output gate
  the new state, ``o = σ(W_o x + U_o h + p_o ⊙ c_t + b_o)``. With ``p = 0`` it is exactly
  ``nn.LSTM`` (same gate order i, f, g, o and weight layout, so weights copy across).

Every model reads ``(B, T, F)`` (also ``(B, T)`` and images row by row, see
:func:`~liandan.models._sequence.as_sequence`) and classifies or regresses from the final
hidden state of the top layer: the last step, concatenated with the backward direction's
final state (its step 0) when bidirectional.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from liandan.models._sequence import as_sequence, sequence_shape
from liandan.registry import register_model


class _PeepholeRecurrence(torch.autograd.Function):
    """The time loop of one peephole-LSTM layer with hand-written backpropagation through time.

    Autograd would record ~17 nodes per step. The hand-written backward (the LSTM derivatives
    with peephole terms, as in Graves 2012, "Supervised sequence labelling with recurrent neural
    networks", ch. 4) needs ~10 plain ops per step and moves the weight gradients out of the loop
    into one matmul: about 3× faster per training step on CPU (T = 50, B = 64, H = 64), on par
    with ``nn.LSTM``. ``test_oracles.py`` checks it against ``gradcheck`` and ``nn.LSTM``.
    ``gx``: input projections ``(T, B, 4H)`` time-major, gate order i, f, g, o.
    """

    @staticmethod
    def forward(ctx, gx: torch.Tensor, weight_hh: torch.Tensor, peephole: torch.Tensor, h0: torch.Tensor,
                c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t_len, b, four_h = gx.shape
        hid = four_h // 4
        w_t = weight_hh.t()  # (H, 4H)
        p_i, p_f, p_o = peephole  # each (H,)
        gates = gx.new_empty(t_len, b, four_h)  # activated i, f, g, o per step
        cs = gx.new_empty(t_len + 1, b, hid)  # c_0 … c_T
        hs = gx.new_empty(t_len + 1, b, hid)  # h_0 … h_T
        tcs = gx.new_empty(t_len, b, hid)  # tanh(c_t)
        cs[0], hs[0] = c0, h0
        for t in range(t_len):
            a = torch.addmm(gx[t], hs[t], w_t, out=gates[t])  # (B, 4H) pre-activations
            i, f, g, o = a.split(hid, 1)
            i.addcmul_(p_i, cs[t]).sigmoid_()  # input gate sees c_{t-1}
            f.addcmul_(p_f, cs[t]).sigmoid_()  # forget gate sees c_{t-1}
            g.tanh_()
            c = torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, g)  # c_t = f ⊙ c_{t-1} + i ⊙ g
            o.addcmul_(p_o, c).sigmoid_()  # output gate sees c_t
            torch.mul(o, torch.tanh(c, out=tcs[t]), out=hs[t + 1])  # h_t = o ⊙ tanh(c_t)
        ctx.save_for_backward(weight_hh, peephole, gates, cs, hs, tcs)
        return hs[1:], cs[-1]  # (T, B, H), (B, H)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_hs: torch.Tensor | None, d_c_last: torch.Tensor | None):
        weight_hh, peephole, gates, cs, hs, tcs = ctx.saved_tensors
        t_len, b, four_h = gates.shape
        hid = four_h // 4
        p_i, p_f, p_o = peephole
        i, f, g, o = gates.split(hid, 2)  # each (T, B, H)
        c_prev, c = cs[:-1], cs[1:]
        # Per-step factors, for all steps at once: d z_o = dh ⊙ k_o, …
        k_o = tcs * o * (1 - o)  # ∂h/∂z_o
        k_c = o * (1 - tcs * tcs)  # ∂h/∂c (direct path)
        k_i = g * i * (1 - i)  # ∂c/∂z_i
        k_f = c_prev * f * (1 - f)  # ∂c/∂z_f
        k_g = i * (1 - g * g)  # ∂c/∂z_g
        d_a = gates.new_empty(t_len, b, four_h)  # gradients of the pre-activations
        dz_i, dz_f, dz_g, dz_o = d_a.split(hid, 2)
        dh = gates.new_zeros(b, hid)
        dc = d_c_last.clone() if d_c_last is not None else gates.new_zeros(b, hid)
        for t in range(t_len - 1, -1, -1):
            if d_hs is not None:
                dh = dh + d_hs[t]
            torch.mul(dh, k_o[t], out=dz_o[t])
            dc.addcmul_(dh, k_c[t]).addcmul_(dz_o[t], p_o)  # c_t reaches the loss via h_t, o_t and t+1
            torch.mul(dc, k_i[t], out=dz_i[t])
            torch.mul(dc, k_f[t], out=dz_f[t])
            torch.mul(dc, k_g[t], out=dz_g[t])
            dc = (dc * f[t]).addcmul_(dz_i[t], p_i).addcmul_(dz_f[t], p_f)  # -> c_{t-1}
            dh = d_a[t] @ weight_hh  # -> h_{t-1}: (B, 4H) @ (4H, H)
        d_w = d_a.reshape(-1, four_h).t() @ hs[:-1].reshape(-1, hid)  # Σ_t d_a_tᵀ h_{t-1}: (4H, H)
        d_p = torch.stack([(dz_i * c_prev).sum((0, 1)), (dz_f * c_prev).sum((0, 1)), (dz_o * c).sum((0, 1))])
        return d_a, d_w, d_p, dh, dc


class PeepholeLSTMCell(nn.Module):
    """One direction of one layer. Parameters mirror ``nn.LSTM``'s ``*_l{k}`` plus ``peephole``
    ``(3, H)``: the diagonal cell-to-gate weights of the input, forget and output gates."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, input_size))  # rows: i, f, g, o
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden))
        self.peephole = nn.Parameter(torch.empty(3, hidden))  # p_i, p_f, p_o
        bound = 1.0 / math.sqrt(hidden)  # nn.LSTM's init, for every parameter
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, T, F), ``h``/``c`` (B, H) -> outputs (B, T, H), final h, final c."""
        with torch.autocast(x.device.type, enabled=False):  # the recurrence runs in fp32
            x, h, c = x.float(), h.float(), c.float()
            # Input projections of all steps in one matmul; only U·h stays inside the loop.
            gx = torch.nn.functional.linear(x.transpose(0, 1), self.weight_ih, self.bias_ih + self.bias_hh)
            out, c_n = _PeepholeRecurrence.apply(gx.contiguous(), self.weight_hh, self.peephole, h, c)  # (T, B, H)
        return out.transpose(0, 1), out[-1], c_n


class PeepholeLSTM(nn.Module):
    """Drop-in for ``nn.LSTM(batch_first=True)``: returns ``(out, (h_n, c_n))`` of the same shapes.

    ``cells[layer · D + direction]``; dropout between layers as in ``nn.LSTM``.
    """

    def __init__(self, input_size: int, hidden: int, layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden, self.layers, self.dirs = hidden, layers, 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            PeepholeLSTMCell(input_size if k < self.dirs else hidden * self.dirs, hidden)
            for k in range(layers * self.dirs))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b = x.shape[0]  # x: (B, T, F)
        zero = x.new_zeros(b, self.hidden)
        hs, cs = [], []
        for layer in range(self.layers):
            if layer:
                x = self.drop(x)
            outs = []
            for d in range(self.dirs):
                seq = x if d == 0 else x.flip(1)  # the backward direction reads the sequence reversed
                out, h, c = self.cells[layer * self.dirs + d](seq, zero, zero)  # (B, T, H)
                outs.append(out if d == 0 else out.flip(1))
                hs.append(h)
                cs.append(c)
            x = torch.cat(outs, -1)  # (B, T, D·H)
        return x, (torch.stack(hs), torch.stack(cs))  # h_n, c_n: (L·D, B, H)


class RecurrentNet(nn.Module):
    """A recurrent encoder + a linear head on the top layer's final hidden state(s)."""

    def __init__(self, rnn: nn.Module, hidden: int, directions: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.rnn, self.directions = rnn, directions
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * directions, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, num_classes)
        with torch.autocast("cpu", enabled=False):  # oneDNN has no bf16 LSTM: the recurrence stays fp32 on CPU
            _, state = self.rnn(as_sequence(x))
        h_n = state[0] if isinstance(state, tuple) else state  # LSTMs return (h_n, c_n); (L·D, B, H)
        last = h_n[-self.directions:]  # the top layer: (D, B, H)
        feat = last.transpose(0, 1).reshape(x.shape[0], -1)  # (B, D·H)
        return self.head(self.drop(feat))


def _build(kind: str, num_classes: int, input_shape: tuple[int, ...], hidden: int, layers: int, bidirectional: bool,
           dropout: float, **kw: object) -> nn.Module:
    _, features = sequence_shape(tuple(input_shape))
    between = dropout if layers > 1 else 0.0  # torch warns about dropout on a single layer
    if kind == "peephole_lstm":
        rnn: nn.Module = PeepholeLSTM(features, hidden, layers, bidirectional, between)
    else:
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        rnn = cls(features, hidden, layers, batch_first=True, dropout=between, bidirectional=bidirectional, **kw)
    return RecurrentNet(rnn, hidden, 2 if bidirectional else 1, num_classes, dropout)


@register_model("rnn", input_kind="sequence", paper="Elman 1990")
def rnn(
    num_classes: int = 1,
    input_shape: tuple[int, ...] = (50, 1),
    hidden: int = 64,
    layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    nonlinearity: Literal["tanh", "relu"] = "tanh",
) -> nn.Module:
    """Elman RNN (nn.RNN) over (B, T, F); the head reads the last step's hidden state.

    Args:
        input_shape: one sample's (T, F): time steps × features (images are read row by row); inferred from
            the data
        hidden: size of the hidden state, per direction
        layers: stacked recurrent layers
        bidirectional: also read the sequence backwards; the head sees both directions' final states
        dropout: dropout probability between stacked layers (when layers > 1) and before the head
        nonlinearity: activation of the recurrence: tanh (Elman 1990) or relu
    """
    return _build("rnn", num_classes, input_shape, hidden, layers, bidirectional, dropout, nonlinearity=nonlinearity)


@register_model("lstm", input_kind="sequence", paper="Hochreiter & Schmidhuber 1997")
def lstm(
    num_classes: int = 1,
    input_shape: tuple[int, ...] = (50, 1),
    hidden: int = 64,
    layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """LSTM (nn.LSTM) over (B, T, F); the head reads the last step's hidden state.

    Args:
        input_shape: one sample's (T, F): time steps × features (images are read row by row); inferred from
            the data
        hidden: size of the hidden state, per direction
        layers: stacked recurrent layers
        bidirectional: also read the sequence backwards; the head sees both directions' final states
        dropout: dropout probability between stacked layers (when layers > 1) and before the head
    """
    return _build("lstm", num_classes, input_shape, hidden, layers, bidirectional, dropout)


@register_model("gru", input_kind="sequence", paper="Cho et al. 2014")
def gru(
    num_classes: int = 1,
    input_shape: tuple[int, ...] = (50, 1),
    hidden: int = 64,
    layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """GRU (nn.GRU) over (B, T, F); the head reads the last step's hidden state.

    Args:
        input_shape: one sample's (T, F): time steps × features (images are read row by row); inferred from
            the data
        hidden: size of the hidden state, per direction
        layers: stacked recurrent layers
        bidirectional: also read the sequence backwards; the head sees both directions' final states
        dropout: dropout probability between stacked layers (when layers > 1) and before the head
    """
    return _build("gru", num_classes, input_shape, hidden, layers, bidirectional, dropout)


@register_model("peephole_lstm", input_kind="sequence", paper="Gers & Schmidhuber 2000")
def peephole_lstm(
    num_classes: int = 1,
    input_shape: tuple[int, ...] = (50, 1),
    hidden: int = 64,
    layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """LSTM with peephole connections (gates see the cell state), own cell; = nn.LSTM at zero peepholes.

    Args:
        input_shape: one sample's (T, F): time steps × features (images are read row by row); inferred from
            the data
        hidden: size of the hidden state, per direction
        layers: stacked recurrent layers
        bidirectional: also read the sequence backwards; the head sees both directions' final states
        dropout: dropout probability between stacked layers (when layers > 1) and before the head
    """
    return _build("peephole_lstm", num_classes, input_shape, hidden, layers, bidirectional, dropout)
