"""Write every recipe under recipes/ from the hyper-parameter tables of METHOD.md.

The recipes are data; this script only keeps the many presets consistent. Re-run it after
changing a table here, and commit the regenerated files:  python tools/make_recipes.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1] / "recipes"
DATASETS = ("toys", "sports", "yelp", "ml-1m")

# The authors' released configs (METHOD.md, "Hyper-parameters").
CODE = {
    "ml-1m": dict(dropout=0.2, attn=0.2, k=20, gamma=0.2, icl=0.001, gen=0.2, rid=0.05),
    "sports": dict(dropout=0.5, attn=0.5, k=10, gamma=0.2, icl=2.0, gen=0.5, rid=0.05),
    "toys": dict(dropout=0.5, attn=0.5, k=10, gamma=0.2, icl=0.1, gen=0.02, rid=0.01),
    "yelp": dict(dropout=0.2, attn=0.1, k=5, gamma=0.6, icl=0.3, gen=0.2, rid=0.1),
}
# How the authors' code builds training examples per dataset (METHOD.md, "Code data modes"):
# Sports and Yelp one sequence per user with the loss at every position, Toys every prefix with
# the loss at its last position, ML-1m the whole history tiled into max_len windows. The paper
# gives one objective for all datasets and no construction, so its presets keep "sequence".
# (Their ML-1m code keeps an older window only when it has more than 10 items.)
CODE_EXAMPLES = {
    "ml-1m": {"mode": "windows", "min_length": 11},
    "sports": {"mode": "sequence"},
    "toys": {"mode": "prefixes"},
    "yelp": {"mode": "sequence"},
}
# The paper's settings (§4.1): hidden 256, lr 1e-4, 200 epochs, λ = 0.3 / 0.2 / 0.1.
PAPER = {
    name: dict(
        dropout=0.2 if name in ("ml-1m", "yelp") else 0.5,
        attn=0.2 if name in ("ml-1m", "yelp") else 0.5,
        k=20 if name == "ml-1m" else 5,
        gamma=0.6 if name == "yelp" else 0.2,
        icl=0.3,
        gen=0.2,
        rid=0.1,
        max_len=200 if name == "ml-1m" else 50,
    )
    for name in DATASETS
}


def toml_value(value: Any) -> str:
    """A TOML literal for a Python scalar, list or dict (inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


# Heads whose loss is a mean over positions of the batch. With one sequence per user and
# length-bucketed batches, a per-batch mean weighs a short-history batch's targets up to ~20× a
# long one's; the authors' code batches users at random, which weighs every target alike.
# average_over = "epoch" restores that at bucketing's speed (results/protocol-grid/README.md:
# SASRec-code .0405 → .0463 R@10 on Sports at 48 users a batch, .0507 → .0573 on Yelp, one seed
# each, validation R@10 up as much).
POSITION_MEAN_HEADS = ("next_item", "generator", "rid")


def weigh_targets_alike(recipe: dict[str, Any]) -> bool:
    """One-sequence recipes: every position-level head averages over the epoch's units per row."""
    if recipe.get("train", {}).get("examples", {}).get("mode", "sequence") != "sequence":
        return False  # prefix rows hold one target each; windows are left as measured so far
    heads = [head for head in recipe["heads"] if head["name"] in POSITION_MEAN_HEADS]
    for head in heads:
        head["average_over"] = "epoch"
    return bool(heads)


def render(path: str, comment: str, recipe: dict[str, Any]) -> None:
    """Write ``recipes/<path>`` starting with the command that runs it."""
    if weigh_targets_alike(recipe):
        comment += (
            '\naverage_over = "epoch": every target weighs the same in the length-bucketed batches'
            ' (README, "Training examples").'
        )
    lines = [f"# eclsr run recipes/{path}", *(f"# {line}" for line in comment.splitlines())]
    for key in ("description", "seed", "data", "encoder"):
        lines.append(f"{key} = {toml_value(recipe[key])}")
    for head in recipe["heads"]:
        lines += ["", "[[heads]]", *(f"{k} = {toml_value(v)}" for k, v in head.items())]
    for section in ("train", "eval"):
        if recipe.get(section):
            lines += [
                "",
                f"[{section}]",
                *(f"{k} = {toml_value(v)}" for k, v in recipe[section].items()),
            ]
    file = ROOT / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("\n".join(lines) + "\n")


def encoder(preset: str, p: dict[str, Any], name: str = "sasrec") -> dict[str, Any]:
    """The UBE (or a generator's encoder) at a preset."""
    hidden = 64 if preset == "code" else 256
    return {
        "name": name,
        "hidden": hidden,
        "layers": 2,
        "heads": 2,
        "inner_size": 4 * hidden,
        "dropout": p["dropout"],
        "attn_dropout": p["attn"],
    }


def train(preset: str, p: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Optimisation: the code's (Adam 1e-3, ≤300 epochs, patience 10 on valid Hit@10) or the paper's."""
    if preset == "code":
        return {
            "examples": CODE_EXAMPLES[dataset],
            "epochs": 300,
            "batch_size": 256,
            "lr": 0.001,
            "patience": 10,
            "monitor": "valid.recall@10",
        }
    schedule = {"name": "freeze_after", "epochs": 10}
    return {
        "examples": {"mode": "sequence"},
        "epochs": 200,
        "batch_size": 256,
        "lr": 0.0001,
        "patience": 10,
        "monitor": "valid.recall@10",
        "schedule": schedule,
    }


def heads(
    p: dict[str, Any],
    preset: str,
    icl: bool = True,
    rid: bool = True,
    mild: str = "dropout",
    invasive: str = "masked_substitution",
    extra: str = "none",
) -> list[dict[str, Any]]:
    """ECL-SR's heads; switch ICL or RID off for the ablations."""
    out: list[dict[str, Any]] = [{"name": "next_item"}]
    if icl:
        out.append(
            {
                "name": "infonce",
                "weight": p["icl"],
                "temperature": 0.05,
                "pooling_k": p["k"],
                "view": {"name": mild},
                **({"extra": extra, "extra_mask_ratio": p["gamma"]} if extra != "none" else {}),
            }
        )
    needs_generator = (rid and invasive == "masked_substitution") or extra != "none"
    if needs_generator:
        out.append(
            {
                "name": "generator",
                "weight": p["gen"],
                "mask_ratio": p["gamma"],
                "encoder": encoder(preset, p, "bert4rec"),
            }
        )
    if rid:
        aug = {
            "name": invasive,
            **({"mask_ratio": p["gamma"]} if invasive == "masked_substitution" else {}),
        }
        if invasive in ("masked_substitution", "random_substitution"):
            out.append(
                {
                    "name": "rid",
                    "weight": p["rid"],
                    "augmentation": aug,
                    "condition": "add" if preset == "code" else "concat",
                }
            )
        else:  # no per-position labels: predict which augmentation was applied (Eq. 11)
            out.append(
                {
                    "name": "aug_prediction",
                    "weight": p["rid"],
                    "augmentations": [{"name": "identity"}, aug],
                }
            )
    return out


def base(
    dataset: str, preset: str, description: str, head_list: list[dict[str, Any]], seed: int = 42
) -> dict[str, Any]:
    p = (CODE if preset == "code" else PAPER)[dataset]
    return {
        "description": description,
        "seed": seed,
        "data": {"dataset": dataset, "max_len": p.get("max_len", 50)},
        "encoder": encoder(preset, p),
        "heads": head_list,
        "train": train(preset, p, dataset),
        "eval": {"ks": [5, 10, 20], "exclude_seen": False},
    }


PRESET_DIR = {"code": "-code", "paper": ""}
PRESET_TEXT = {
    "code": "authors' code hyper-parameters and training examples (METHOD.md)",
    "paper": "the paper's hyper-parameters, one training sequence per user",
}


def main() -> None:
    for preset in ("paper", "code"):
        for ds in DATASETS:
            p = (CODE if preset == "code" else PAPER)[ds]
            suffix = PRESET_DIR[preset]
            text = PRESET_TEXT[preset]
            variants = {
                f"ecl-sr{suffix}": (
                    "ECL-SR: next-item + ICL (dropout views) + generator + RID",
                    heads(p, preset),
                ),
                f"sasrec{suffix}": (
                    "SASRec: next-item loss only (Fig. 4 'SASRec')",
                    heads(p, preset, icl=False, rid=False),
                ),
                f"icl-sr{suffix}": (
                    "ICL-SR: ECL-SR without RID (invariance only)",
                    heads(p, preset, rid=False),
                ),
                f"ridl-sr{suffix}": (
                    "RIDL-SR: ECL-SR without ICL (equivariance only)",
                    heads(p, preset, icl=False),
                ),
                f"icl-sr-pos{suffix}": (
                    "ICL-SR+pos: generator outputs as extra positives",
                    heads(p, preset, rid=False, extra="pos"),
                ),
                f"icl-sr-neg{suffix}": (
                    "ICL-SR+neg: generator outputs as extra negatives",
                    heads(p, preset, rid=False, extra="neg"),
                ),
            }
            for folder, (desc, head_list) in variants.items():
                render(f"{folder}/{ds}.toml", f"{desc}; {text}.", base(ds, preset, desc, head_list))
            baselines(ds, preset, p)
            table5(ds, preset, p)


def baselines(ds: str, preset: str, p: dict[str, Any]) -> None:
    """Table 3 baselines that fit the framework."""
    suffix = PRESET_DIR[preset]
    text = PRESET_TEXT[preset]
    hidden = 64 if preset == "code" else 256
    pop = base(
        ds, preset, "PopRec: rank by training popularity", [{"name": "next_item", "weight": 0.0}]
    )
    pop["encoder"] = {"name": "pop"}
    pop["train"] = {**pop["train"], "examples": {"mode": "sequence"}, "epochs": 0}
    render(f"baselines/pop/{ds}.toml", "PopRec (no training).", pop)
    gru = base(ds, preset, "GRU4Rec", [{"name": "next_item"}])
    gru["encoder"] = {"name": "gru4rec", "hidden": hidden, "dropout": p["dropout"]}
    render(f"baselines/gru4rec{suffix}/{ds}.toml", f"GRU4Rec with the next-item loss; {text}.", gru)
    bert = base(
        ds,
        preset,
        "BERT4Rec: bidirectional encoder trained only by the cloze (generator) loss",
        [
            {"name": "next_item", "weight": 0.0},
            {
                "name": "generator",
                "weight": 1.0,
                "mask_ratio": p["gamma"],
                "encoder": encoder(preset, p, "bert4rec"),
            },
        ],
    )
    bert["encoder"] = encoder(preset, p, "bert4rec")
    # The cloze loss masks items anywhere in a row: prefix rows would only repeat its targets.
    bert["train"] = {**bert["train"], "examples": {"mode": "sequence"}}
    render(
        f"baselines/bert4rec{suffix}/{ds}.toml",
        f"BERT4Rec; {text}. The UBE is a bert4rec encoder ranked through [MASK]; the cloze loss is the generator head's\n"
        "(it trains its own bert4rec over the shared item table, so this is BERT4Rec-style, not a single-network BERT4Rec).",
        bert,
    )
    cl4 = base(
        ds,
        preset,
        "CL4SRec: InfoNCE between two invasively augmented views (crop / mask-free reorder)",
        [
            {"name": "next_item"},
            {
                "name": "infonce",
                "weight": p["icl"],
                "temperature": 0.05,
                "pooling_k": p["k"],
                "view": {"name": "crop", "ratio": 0.8},
                "augment_both": True,
            },
        ],
    )
    render(f"baselines/cl4srec{suffix}/{ds}.toml", f"CL4SRec-style; {text}.", cl4)
    duo = base(
        ds,
        preset,
        "DuoRec (unsupervised): InfoNCE between two dropout passes",
        [
            {"name": "next_item"},
            {
                "name": "infonce",
                "weight": p["icl"],
                "temperature": 0.05,
                "pooling_k": 1,
                "view": {"name": "dropout"},
                "symmetric": True,
            },
        ],
    )
    render(f"baselines/duorec-unsup{suffix}/{ds}.toml", f"DuoRec-unsupervised-style; {text}.", duo)
    elec = base(
        ds,
        preset,
        "ELECRec-style: generator + unconditional-style discriminator (RID without ICL, concat)",
        heads(p, preset, icl=False),
    )
    for head in elec["heads"]:
        if head["name"] == "rid":
            head["condition"] = "concat"
    render(
        f"baselines/elecrec{suffix}/{ds}.toml", f"ELECRec-style discriminator model; {text}.", elec
    )


TABLE5_MILD = ("dropout", "normalize", "perturb")
TABLE5_INVASIVE = (
    "masked_substitution",
    "random_substitution",
    "insert",
    "delete",
    "crop",
    "reorder",
)


def table5(ds: str, preset: str, p: dict[str, Any]) -> None:
    """Table 5: one recipe; the grid is a documented sweep over its two slots."""
    suffix = PRESET_DIR[preset]
    comment = (
        f"Table 5 grid (mild x invasive), {PRESET_TEXT[preset]}: this file is the (dropout,\n"
        "masked_substitution) cell; every other cell is one `--set` away, listed in recipes/README.md."
    )
    recipe = base(ds, preset, "Table 5 cell: mild x invasive", heads(p, preset))
    render(f"table5{suffix}/{ds}.toml", comment, recipe)


if __name__ == "__main__":
    main()
