"""Parity of eclsr's ECL-SR with the authors' implementation, term by term.

    python tools/parity_ecl.py REF_DIR [--preset sports|toys|yelp] [--batch 64] [--items 300]

``REF_DIR`` is a checkout of the authors' code (a RecBole 1.0.1 fork with ``recbole/model/
sequential_recommender/ecl.py``). Nothing of it is copied here: its model classes are imported
from ``REF_DIR`` at run time (``recbole.utils``, which pulls in logging and tensorboard, is
replaced by the one module the model classes need, the reference's own ``enum_type.py``).

What it does, at one preset (the flags of ``REF_DIR/benchmarks/run_<preset>.sh`` on top of
``conf/config_m_DCL.yaml``; ours: ``recipes/ecl-sr-code/<preset>.toml``):

1. builds our model, copies every weight into the reference (fused QKV split into Q, K, V;
   position table rows 0..L-1), with dropout 0 in both so every pass is deterministic, and
   ``encoder.positions = "from_end"`` in ours (the reference left-pads rows to L);
2. draws one batch (right-padded for us, the same rows left-padded for the reference) and one
   set of masked positions, injected into both (the reference's ``reconstruct_train_data`` and
   our ``draw_mask`` are replaced for the call);
3. compares every loss term and, per term, the gradient of every parameter. Where the reference
   differs on purpose (METHOD.md), it also recomputes the reference's term the way we define it
   *from the reference model's own outputs*, so the remaining difference is only the definition.

Exit status 0 when every term listed as "must match" agrees to ``--tol`` (default 1e-5).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import re
import sys
import tomllib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
import yaml
from torch import Tensor, nn

from eclsr.components.step import Batch, Step
from eclsr.engine.model import Model
from eclsr.plugins.heads import generator as generator_module
from eclsr.recipe.load import validate_recipe

REPO = Path(__file__).resolve().parent.parent
MAX_LEN = 50

#: Reference terms (as-is, or recomputed with our definition) that must equal ours, by our
#: next_item.average_over (at the toys preset the reference's own next_item is compared).
MUST_MATCH = {
    "targets": ("next_item[real slots only]", "infonce[length-masked pooling]", "generator", "rid"),
    "slots": ("next_item[real slots, / B·L]", "infonce[length-masked pooling]", "generator", "rid"),
}

INTENDED = """Intended differences (METHOD.md), where a '!=' line is expected:
  next_item (sports, yelp: disable_aug=y): the reference averages CE over all B x L slots of the
    left-padded batch, padding slots included (trained to predict the padding class 0; the slot
    before a row's first item learns to predict that item). Ours: mean over real positions. Our
    next_item.average_over = "slots" reproduces the reference's scale (sum over real / B.L),
    not its padding terms. Toys (disable_aug=n, last-position loss) matches as-is.
  infonce: the reference's avgk pools the last k slots of the left-padded array, padding states
    included for rows shorter than k. Ours pools the last min(k, n) real states."""


# --------------------------------------------------------------------------- the reference


def import_reference(ref_dir: Path) -> types.ModuleType:
    """Import the reference's ``ecl`` module from ``ref_dir`` (stubbing ``recbole.utils``)."""
    sys.path.insert(0, str(ref_dir))
    utils = types.ModuleType("recbole.utils")
    utils.__path__ = []  # a package, so ``recbole.utils.x`` imports resolve through sys.modules
    sys.modules["recbole.utils"] = utils
    path = ref_dir / "recbole" / "utils" / "enum_type.py"
    spec = importlib.util.spec_from_file_location("recbole.utils.enum_type", path)
    assert spec is not None and spec.loader is not None, path
    enums = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(enums)
    for name in dir(enums):
        if not name.startswith("_"):
            setattr(utils, name, getattr(enums, name))
    utils.set_color = lambda text, *args, **kwargs: text  # type: ignore[attr-defined]
    import recbole.model.sequential_recommender.ecl as ecl  # noqa: PLC0415

    return ecl


class RefConfig(dict):
    """RecBole's Config answers None for a missing key; so does this."""

    def __getitem__(self, key: str) -> Any:
        return self.get(key)


def reference_config(ref_dir: Path, preset: str) -> RefConfig:
    """``conf/config_m_DCL.yaml`` + the flags of ``benchmarks/run_<preset>.sh``, dropout 0."""
    values = yaml.safe_load((ref_dir / "conf" / "config_m_DCL.yaml").read_text())
    script = (ref_dir / "benchmarks" / f"run_{preset}.sh").read_text()
    values |= dict(re.findall(r"--(\w+)=(\S+)", script))
    # RecBole reads 1e-12 (which plain YAML 1.1 leaves a string) and every flag as Python literals.
    config = RefConfig({key: literal(value) for key, value in values.items()})
    config.update(
        USER_ID_FIELD="user_id",
        ITEM_ID_FIELD="item_id",
        LIST_SUFFIX="_list",
        ITEM_LIST_LENGTH_FIELD="item_length",
        NEG_PREFIX="neg_",
        MAX_ITEM_LIST_LENGTH=MAX_LEN,
        device="cpu",
        hidden_dropout_prob=0.0,
        attn_dropout_prob=0.0,
    )
    return config


def literal(value: Any) -> Any:
    """A string that reads as a Python literal becomes that value; anything else is kept."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value.strip("\"'")


@dataclass
class RefDataset:
    """What the reference's constructors ask of a dataset: the item count (with padding)."""

    num_items: int

    def num(self, field: str) -> int:
        """RecBole counts the padding id: N + 1."""
        return self.num_items + 1


# --------------------------------------------------------------------------- ours


def our_recipe(preset: str, positions: str = "from_end", average_over: str = "targets") -> Any:
    """``recipes/ecl-sr-code/<preset>.toml``, dropout 0, ``positions`` in every encoder and the
    next-item head's ``average_over``."""
    data = tomllib.loads((REPO / "recipes" / "ecl-sr-code" / f"{preset}.toml").read_text())
    data["data"] = {"dataset": "synthetic", "max_len": MAX_LEN}
    for config in data["heads"]:
        if config["name"] == "next_item":
            config["average_over"] = average_over
    encoders = [data["encoder"]] + [h["encoder"] for h in data["heads"] if "encoder" in h]
    for encoder in encoders:
        encoder.update(dropout=0.0, attn_dropout=0.0, positions=positions)
    return validate_recipe(data)


def head(model: Model, name: str) -> nn.Module:
    """Our head registered as ``name``."""
    return model.heads[model.head_names.index(name)]


# --------------------------------------------------------------------------- weights


@dataclass
class Pair:
    """Rows ``own_rows`` of our parameter ``own`` are the reference's ``ref`` (rows ``ref_rows``)."""

    name: str
    own: Tensor
    ref: Tensor
    own_rows: slice = field(default_factory=lambda: slice(None))
    ref_rows: slice = field(default_factory=lambda: slice(None))


def block_pairs(prefix: str, ours: nn.Module, ref_layer: nn.Module) -> Iterator[Pair]:
    """One transformer block: our fused QKV rows [0, D) / [D, 2D) / [2D, 3D) are Q / K / V."""
    attention, ffn = ref_layer.multi_head_attention, ref_layer.feed_forward
    d = attention.dense.weight.size(0)
    for i, part in enumerate(("query", "key", "value")):
        rows = slice(i * d, (i + 1) * d)
        ref_linear = getattr(attention, part)
        yield Pair(f"{prefix}.qkv.weight[{part}]", ours.qkv.weight, ref_linear.weight, rows)
        yield Pair(f"{prefix}.qkv.bias[{part}]", ours.qkv.bias, ref_linear.bias, rows)
    modules = {
        "proj": attention.dense,
        "norm1": attention.LayerNorm,
        "ffn.0": ffn.dense_1,
        "ffn.2": ffn.dense_2,
        "norm2": ffn.LayerNorm,
    }
    for name, ref_module in modules.items():
        own = ours.get_submodule(name)
        yield Pair(f"{prefix}.{name}.weight", own.weight, ref_module.weight)
        yield Pair(f"{prefix}.{name}.bias", own.bias, ref_module.bias)


def encoder_pairs(prefix: str, ours: nn.Module, ref: nn.Module) -> Iterator[Pair]:
    """Every weight of a transformer encoder; the reference's position table has L+1 rows."""
    rows = slice(0, MAX_LEN)
    yield Pair(f"{prefix}.position_embedding", ours.position_embedding.weight,
               ref.position_embedding.weight, ref_rows=rows)  # fmt: skip
    yield Pair(f"{prefix}.norm.weight", ours.norm.weight, ref.LayerNorm.weight)
    yield Pair(f"{prefix}.norm.bias", ours.norm.bias, ref.LayerNorm.bias)
    for i, (block, layer) in enumerate(zip(ours.blocks, ref.trm_encoder.layer, strict=True)):
        yield from block_pairs(f"{prefix}.blocks.{i}", block, layer)


def parameter_pairs(model: Model, ref: nn.Module) -> list[Pair]:
    """Every parameter of ours that has a counterpart in the reference."""
    pairs = [Pair("item_embedding", model.item_embedding.weight, ref.item_embedding.weight)]
    pairs += encoder_pairs("encoder", model.encoder, ref.encoder)
    pairs += encoder_pairs("generator", head(model, "generator").encoder, ref.generator)
    rid = head(model, "rid").classifier.weight
    pairs.append(Pair("rid.classifier", rid, ref.discriminator_linear.weight))
    return pairs


def copy_weights(pairs: list[Pair]) -> None:
    """Give the reference our initial weights."""
    with torch.no_grad():
        for pair in pairs:
            pair.ref[pair.ref_rows].copy_(pair.own[pair.own_rows])


# --------------------------------------------------------------------------- the batch


@dataclass
class ParityBatch:
    """One batch in both layouts.

    Attributes:
        items: ``[B, L]`` right-padded (ours).
        lengths: ``[B]``.
        next_item: ``[B]`` the item after each row (the reference's ``POS_ITEM_ID``).
        left: ``[B, L]`` the same rows left-padded (the reference).
        masked: ``[B, L]`` bool, right layout: the injected masked positions.
    """

    items: Tensor
    lengths: Tensor
    next_item: Tensor
    left: Tensor
    masked: Tensor

    def to_left(self, right: Tensor) -> Tensor:
        """Move each row's first ``length`` values of ``right [B, L, ...]`` to the end."""
        out = torch.zeros_like(right)
        for b, n in enumerate(self.lengths.tolist()):
            out[b, MAX_LEN - n :] = right[b, :n]
        return out

    def real_left(self) -> Tensor:
        """``[B, L]`` bool, True at the reference's real slots."""
        slots = torch.arange(MAX_LEN).unsqueeze(0)
        return slots >= (MAX_LEN - self.lengths).unsqueeze(1)


def make_batch(gen: torch.Generator, size: int, num_items: int, ratio: float) -> ParityBatch:
    """Rows of every length 2..L (short ones below k, full ones at L), items 1..N, ``ratio``
    of positions masked: ``int(ratio·n + 1)`` per row, never the first item, at most
    ``int(ratio·L)`` (the reference keeps that many predictions per row)."""
    lengths = torch.randint(2, MAX_LEN + 1, (size,), generator=gen)
    lengths[:3] = torch.tensor([2, 5, MAX_LEN])  # below k, and a full row
    items = torch.randint(1, num_items + 1, (size, MAX_LEN), generator=gen)
    items = items.masked_fill(torch.arange(MAX_LEN).unsqueeze(0) >= lengths.unsqueeze(1), 0)
    masked = torch.zeros(size, MAX_LEN, dtype=torch.bool)
    cap = int(ratio * MAX_LEN)
    for b, n in enumerate(lengths.tolist()):
        count = min(int(ratio * n + 1), n - 1, cap)
        picks = 1 + torch.randperm(n - 1, generator=gen)[:count]
        masked[b, picks] = True
    next_item = torch.randint(1, num_items + 1, (size,), generator=gen)
    batch = ParityBatch(items, lengths, next_item, items, masked)
    batch.left = batch.to_left(items)
    return batch


def reference_masking(batch: ParityBatch, mask_token: int, ratio: float) -> tuple[Tensor, ...]:
    """What the reference's ``reconstruct_train_data`` returns, for the injected positions."""
    left_masked = batch.to_left(batch.masked)  # [B, L]
    masked_seq = batch.left.masked_fill(left_masked, mask_token)
    width = int(ratio * MAX_LEN)
    pos_items = torch.zeros(batch.items.size(0), width, dtype=torch.long)
    index = torch.zeros_like(pos_items)
    for b in range(batch.items.size(0)):
        slots = left_masked[b].nonzero().squeeze(1)
        pos_items[b, width - len(slots) :] = batch.left[b, slots]
        index[b, width - len(slots) :] = slots
    real = batch.real_left().long()
    return masked_seq, real - left_masked.long(), left_masked.long(), pos_items, index


# --------------------------------------------------------------------------- the losses


def our_losses(model: Model, batch: ParityBatch, last_only: bool) -> dict[str, Tensor]:
    """Our unweighted loss terms on the batch, with the injected masked positions."""
    targets = torch.cat([batch.items[:, 1:], torch.zeros_like(batch.items[:, :1])], dim=1)
    targets = targets.scatter(1, (batch.lengths - 1).unsqueeze(1), batch.next_item.unsqueeze(1))
    if last_only:  # prefix examples: the loss at each row's last position only
        last = torch.arange(MAX_LEN).unsqueeze(0) == (batch.lengths - 1).unsqueeze(1)
        targets = targets.masked_fill(~last, 0)
    step = Step(
        Batch(batch.items, targets, batch.lengths, torch.arange(batch.items.size(0))),
        model.encoder,
        model.item_embedding,
        model.num_items,
        torch.Generator().manual_seed(0),
        services=model.services,
    )
    original = generator_module.draw_mask
    generator_module.draw_mask = lambda *args, **kwargs: batch.masked
    try:
        losses = model.losses(step)
    finally:
        generator_module.draw_mask = original
    return {name: value for name, (_, value) in losses.items()}


@contextlib.contextmanager
def injected(ref: nn.Module, masking: tuple[Tensor, ...]) -> Iterator[None]:
    """The reference's masking returns ``masking`` for the duration."""
    ref.reconstruct_train_data = lambda item_seq, type=None: masking  # noqa: A002
    try:
        yield
    finally:
        del ref.reconstruct_train_data


def reference_losses(
    ref: nn.Module, batch: ParityBatch, masking: tuple[Tensor, ...]
) -> dict[str, Tensor]:
    """The reference's own four terms (unweighted), plus our definitions recomputed from its outputs."""
    interaction = {
        "item_id_list": batch.left,
        "item_length": batch.lengths,
        "item_id": batch.next_item,
    }
    weights = {
        "next_item": ref.encode_loss_weight,
        "infonce": ref.con_loss_weight,
        "rid": ref.discrim_loss_weight,
        "generator": ref.generate_loss_weight,
    }
    with injected(ref, masking):
        terms = ref.calculate_loss(interaction)
    out = {name: term / weights[name] for name, term in zip(weights, terms, strict=True)}
    hidden = ref.encoder.forward(batch.left, batch.lengths)  # [B, L, D]
    labels = torch.cat([batch.left[:, 1:], batch.next_item.unsqueeze(1)], dim=1)  # [B, L]
    logits = hidden @ ref.item_embedding.weight[:-1].t()  # [B, L, N+1]
    real = batch.real_left()
    if ref.disable_aug in ("y", "h", "hm"):
        out["next_item[real slots only]"] = F.cross_entropy(logits[real], labels[real])
        slots = MAX_LEN * batch.items.size(0)
        out["next_item[real slots, / B·L]"] = F.cross_entropy(logits[real], labels[real], reduction="sum") / slots  # fmt: skip
    k = ref.contras_k
    window = real & (torch.arange(MAX_LEN).unsqueeze(0) >= MAX_LEN - k)  # last min(k, n) real slots
    pooled = (hidden * window.unsqueeze(-1)).sum(1) / window.sum(1, keepdim=True)
    sims = (
        F.cosine_similarity(pooled.unsqueeze(1), pooled.unsqueeze(0), dim=-1)
        / ref.contras_loss_temp
    )
    out["infonce[length-masked pooling]"] = F.cross_entropy(sims, torch.arange(len(pooled)))
    return out


# --------------------------------------------------------------------------- comparison


def gradients(loss: Tensor, module: nn.Module) -> dict[int, Tensor]:
    """``id(parameter) → d loss / d parameter`` (zeros where the loss does not depend on it)."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return {
        id(p): torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
    }


def grad_difference(
    mine: Tensor, theirs: Tensor, model: Model, ref: nn.Module, pairs: list[Pair]
) -> tuple[float, str, float]:
    """Largest |d ours − d reference| over the mapped parameters, where, and the largest |d ours|."""
    own, other = gradients(mine, model), gradients(theirs, ref)
    worst, where, scale = 0.0, "", 0.0
    for pair in pairs:
        a = own[id(pair.own)][pair.own_rows]
        b = other[id(pair.ref)][pair.ref_rows]
        diff = float((a - b).abs().max())
        scale = max(scale, float(a.abs().max()))
        if diff > worst:
            worst, where = diff, pair.name
    return worst, where, scale


def compare(
    model: Model,
    ref: nn.Module,
    ours: dict[str, Tensor],
    theirs: dict[str, Tensor],
    pairs: list[Pair],
) -> list[dict[str, Any]]:
    """Per (our term, reference term or its recomputation): values and gradient agreement."""
    rows = []
    for name, mine in ours.items():
        for ref_name, value in theirs.items():
            if ref_name != name and not ref_name.startswith(name + "["):
                continue
            diff, where, scale = grad_difference(mine, value, model, ref, pairs)
            rows.append({
                "ours": name,
                "reference": ref_name,
                "value ours": float(mine.detach()),
                "value reference": float(value.detach()),
                "abs diff": abs(float(mine.detach()) - float(value.detach())),
                "max grad diff": diff,
                "at": where,
                "max |grad| ours": scale,
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    """Build both models, compare, print a table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref_dir", type=Path)
    parser.add_argument("--preset", default="sports", choices=["sports", "toys", "yelp"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--positions",
        default="from_end",
        choices=["from_end", "from_start"],
        help="our encoders' position scheme (the reference's left padding is from_end)",
    )
    parser.add_argument(
        "--average-over",
        default="targets",
        choices=["targets", "slots"],
        help="our next_item.average_over (slots: the reference's loss scale)",
    )
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)  # parity, not speed: float64 removes rounding noise
    ecl = import_reference(args.ref_dir)
    config = reference_config(args.ref_dir, args.preset)
    torch.manual_seed(args.seed)
    model = Model(
        our_recipe(args.preset, args.positions, args.average_over),
        args.items,
        torch.ones(args.items + 1),
    ).double()
    ref = ecl.ECL(config, RefDataset(args.items)).double()
    ref.eval(), model.eval()  # dropout is 0 anyway; eval keeps torch from drawing masks
    pairs = parameter_pairs(model, ref)
    copy_weights(pairs)
    gen = torch.Generator().manual_seed(args.seed)
    batch = make_batch(gen, args.batch, args.items, float(config["mask_ratio"]))
    masking = reference_masking(batch, ref.mask_token, float(config["mask_ratio"]))
    ours = our_losses(model, batch, last_only=config["disable_aug"] == "n")
    theirs = reference_losses(ref, batch, masking)
    rows = compare(model, ref, ours, theirs, pairs)
    failed = 0
    for row in rows:
        ok = row["abs diff"] <= args.tol and row["max grad diff"] <= args.tol
        must = MUST_MATCH[args.average_over] + (("next_item",) if args.preset == "toys" else ())
        failed += not ok and row["reference"] in must
        print(
            f"{'==' if ok else '!='} {row['ours']:<10} vs reference {row['reference']:<34} "
            f"ours {row['value ours']:.8f} ref {row['value reference']:.8f} "
            f"|Δ| {row['abs diff']:.2e} max|Δgrad| {row['max grad diff']:.2e} ({row['at']}; "
            f"max|grad| {row['max |grad| ours']:.2e})"
        )
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1))
    print(INTENDED)
    print(
        f"{failed} term(s) that must match differ"
        if failed
        else "every term that must match agrees"
    )
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main())
