"""`leadscore generate|train|evaluate|score|features`: the engine on files, with no server."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, cast

import typer

from leadscore.core.config import Settings

if TYPE_CHECKING:
    from leadscore.engine.attributes import AttributeSpec
    from leadscore.engine.model import LeadModel, ScoringPolicy
    from leadscore.engine.training import TrainingInput

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

#: `evaluate --split time`: the newest share of the rows, predicted by a model of the rest.
FORWARD_TEST_SHARE: Final = 0.2
ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="Model directory (default: the built-in model).")
]
MappingOpt = Annotated[
    Path | None, typer.Option("--mapping", help="YAML column mapping for a CRM export.")
]
SearchOpt = Annotated[
    bool,
    typer.Option(
        "--search/--no-search",
        help="Pick tree and encoding settings by time-ordered cross-validation first.",
    ),
]
CrossFitOpt = Annotated[
    bool,
    typer.Option(
        "--cross-fit/--no-cross-fit",
        help="Trees on every training row, calibrated on out-of-fold margins.",
    ),
]


def pin_threads(settings: Settings) -> None:
    """Pin native thread pools before numpy or LightGBM start one, so two pools never fight."""
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.num_threads))


def _load_model(settings: Settings, model: Path | None) -> LeadModel:
    from leadscore.engine.defaults import load_or_build_default
    from leadscore.engine.model import LeadModel

    directory = model or settings.model_dir
    if directory is not None:
        return LeadModel.load(directory)
    return load_or_build_default(settings.home, settings.num_threads)


def _policy(settings: Settings) -> ScoringPolicy:
    """The team's thresholds and commission rate, recorded in every model it trains."""
    from leadscore.engine.model import ScoringPolicy

    return ScoringPolicy(
        hot=settings.hot_threshold,
        warm=settings.warm_threshold,
        escalation_confidence=settings.escalation_confidence,
        commission_rate=settings.commission_rate,
    )


@app.command()
def generate(
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV, Parquet or JSONL file.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of leads.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write synthetic leads with outcomes and their true probabilities."""
    from leadscore.engine.io import write_frame
    from leadscore.engine.synthetic import generate as generate_leads

    started = time.perf_counter()
    write_frame(generate_leads(n, seed=seed), output)
    typer.echo(f"wrote {n} leads to {output} in {time.perf_counter() - started:.1f} s")


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="Training file with outcomes.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model directory to write.")],
    mapping: MappingOpt = None,
    algorithm: Annotated[
        str, typer.Option(help="lightgbm, random_forest or logistic (with --no-search)")
    ] = "lightgbm",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    search: SearchOpt = True,
    cross_fit: CrossFitOpt = True,
    include_protected: Annotated[
        bool, typer.Option(help="Opt in to family-status features (fair-housing risk).")
    ] = False,
) -> None:
    """Train a model on a CRM export or a generated file and write its artifact."""
    from leadscore.engine.attributes import AttributeSpec
    from leadscore.engine.mapping import load_mapping, load_training_frame
    from leadscore.engine.model import ModelConfig
    from leadscore.engine.model import train as train_model
    from leadscore.engine.training import TrainingInput

    settings = Settings()
    if algorithm not in ("lightgbm", "random_forest", "logistic"):
        raise typer.BadParameter("algorithm must be lightgbm, random_forest or logistic")
    spec = load_mapping(mapping) if mapping else None
    frame = load_training_frame(data, spec)
    attributes = spec.attribute_spec if spec else AttributeSpec()
    config = ModelConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        num_threads=settings.num_threads,
        seed=seed,
        search=search and algorithm == "lightgbm",  # a named algorithm is the user's choice
        cross_fit=cross_fit,
        include_protected=include_protected or settings.include_protected_features,
        policy=_policy(settings),
    )
    model = train_model(
        TrainingInput.from_frame(frame, attributes),
        config,
        attributes,
        data_description=f"{data.name}" + (f" mapped by {mapping.name}" if mapping else ""),
    )
    model.save(output)
    typer.echo(json.dumps({"version": model.version_, "metrics": model.card_["metrics"]}, indent=2))


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Labelled file.")],
    mapping: MappingOpt = None,
    model: ModelOpt = None,
    cv: Annotated[int | None, typer.Option("--cv", min=2, help="K-fold cross-validation.")] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="time: train on the oldest 80 %, test on the newest 20 %."),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Calibration plot PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    search: SearchOpt = True,
    cross_fit: CrossFitOpt = True,
) -> None:
    """Held-out metrics of a model, or of the whole training pipeline by cross-validation or
    a forward split in time."""
    from leadscore.engine.attributes import AttributeSpec
    from leadscore.engine.errors import InvalidInputError
    from leadscore.engine.mapping import load_mapping, load_training_frame
    from leadscore.engine.model import ModelConfig
    from leadscore.engine.model import train as train_model
    from leadscore.engine.pipeline import calibration_plot, cross_validate, evaluate_model
    from leadscore.engine.policy import older_and_newest
    from leadscore.engine.training import TrainingInput

    if split not in (None, "time"):
        raise InvalidInputError(f"--split {split}: --split takes `time` (a forward split)")
    if split is not None and cv is not None:
        raise InvalidInputError("give --cv or --split, not both")
    settings = Settings()
    if split == "time":
        inputs, attributes = _time_ordered_input(data, mapping, None)
        older, newest = older_and_newest(inputs, FORWARD_TEST_SHARE)
        config = ModelConfig(
            num_threads=settings.num_threads, seed=seed, search=search, cross_fit=cross_fit
        )
        result = evaluate_model(train_model(older, config, attributes), newest)
        _print_metrics(result.metrics, as_json)
        if plot is not None:
            calibration_plot(result, plot)
        return
    spec = load_mapping(mapping) if mapping else None
    frame = load_training_frame(data, spec)
    attributes = spec.attribute_spec if spec else AttributeSpec()
    inputs = TrainingInput.from_frame(frame, attributes)
    if cv is not None:
        config = ModelConfig(
            num_threads=settings.num_threads, seed=seed, search=search, cross_fit=cross_fit
        )
        result = cross_validate(inputs, config, attributes, cv)
    else:
        result = evaluate_model(_load_model(settings, model), inputs)
    if plot is not None:
        calibration_plot(result, plot)
    _print_metrics(result.metrics, as_json)


def _print_metrics(metrics: dict[str, dict[str, float]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
        return
    for head, m in metrics.items():
        typer.echo(
            f"{head:<11} AUC {m['auc']:.4f}  Brier {m['brier']:.4f}  "
            f"log-loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}  n {int(m['n'])}"
        )


@app.command()
def backtest(
    data: Annotated[Path, typer.Option("--data", help="Labelled export (CSV, Parquet, JSONL).")],
    mapping: MappingOpt = None,
    order_by: Annotated[
        str | None, typer.Option("--order-by", help="The export's date column to replay by.")
    ] = None,
    window: Annotated[
        int | None,
        typer.Option("--window", min=50, help="Leads per window (a tenth, at most 1,000)."),
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", help="static, recalibrate, retrain or all.")
    ] = "all",
    start: Annotated[
        int | None,
        typer.Option("--start", min=50, help="Leads the first model learns from (a fifth)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Brier per window, PNG.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole report as JSON.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Replay a labelled history in time order as the service would have run on it."""
    from leadscore.engine.backtest import POLICIES, BacktestConfig, Policy
    from leadscore.engine.backtest import backtest as run_backtest
    from leadscore.engine.backtest import plot as plot_backtest
    from leadscore.engine.errors import InvalidInputError
    from leadscore.engine.model import ModelConfig

    chosen = POLICIES if policy == "all" else cast(tuple[Policy, ...], (policy,))
    if not set(chosen) <= set(POLICIES):
        raise InvalidInputError(f"--policy {policy}: policy must be static, recalibrate, "
                                "retrain or all")  # fmt: skip
    settings = Settings()
    inputs, attributes = _time_ordered_input(data, mapping, order_by)
    config = BacktestConfig.sized(
        len(inputs.created_us),
        window,
        ModelConfig(num_threads=settings.num_threads, seed=seed),
        start,
    )
    result = run_backtest(inputs, attributes, config, chosen)
    if plot is not None:
        plot_backtest(result, plot)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    rates = result["base_rate"]
    typer.echo(
        f"{result['rows']:,} leads: the first {result['start']:,} train the first model, then "
        f"{result['windows']} windows of {result['window']:,}; converted "
        f"{rates['training']:.1%} at the start, {rates['scored']:.1%} after"
    )
    typer.echo(f"{'':<12}{'overall':^36}  {'last fifth':^36}")
    for name, series in result["policies"].items():
        cells = []
        for part in ("overall", "last_fifth"):
            m = series[part]
            cells.append(f"AUC {m.get('auc', float('nan')):.4f} Brier {m['brier']:.4f} "
                         f"ECE {m['ece']:.4f}")  # fmt: skip
        label = "prior (past)" if name == "prior" else name
        promoted = sum(u["promoted"] for u in series.get("updates", []))
        note = f"  {promoted} updates promoted" if name in ("recalibrate", "retrain") else ""
        typer.echo(f"{label:<12}{cells[0]}  {cells[1]}{note}")


def _time_ordered_input(
    data: Path, mapping: Path | None, order_by: str | None
) -> tuple[TrainingInput, AttributeSpec]:
    """The labelled rows in time order: by a date column, the file's row order when the
    mapping says so, or the leads' creation times."""
    from dataclasses import replace

    import numpy as np

    from leadscore.engine.attributes import AttributeSpec
    from leadscore.engine.errors import MappingError
    from leadscore.engine.io import canonicalise, read_frame
    from leadscore.engine.mapping import load_mapping, load_training_frame, sort_by_time
    from leadscore.engine.training import TrainingInput

    spec = load_mapping(mapping) if mapping else None
    if spec is not None and order_by is not None:
        spec = spec.model_copy(update={"order_by": order_by, "row_order": None})
    if spec is None and order_by is not None:
        frame = canonicalise(sort_by_time(read_frame(data), order_by))
    else:
        frame = load_training_frame(data, spec)
    attributes = spec.attribute_spec if spec else AttributeSpec()
    inputs = TrainingInput.from_frame(frame, attributes)
    if order_by is not None or (spec is not None and spec.time_ordered):
        return replace(inputs, created_us=np.arange(frame.height, dtype=np.float64)), attributes
    if np.isnan(inputs.created_us).any():
        raise MappingError(
            "the rows have no creation time to replay them by: give --order-by COLUMN, or "
            "order_by / row_order: time in the mapping"
        )
    return inputs, attributes


@app.command()
def score(
    input_file: Annotated[Path, typer.Argument(help="Leads: CSV, Parquet or JSONL.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Scores: .csv/.parquet/.jsonl")],
    model: ModelOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add top reasons.")] = False,
    chunk_size: Annotated[int, typer.Option(min=1, max=1_000_000)] = 50_000,
) -> None:
    """Score a lead file in bounded memory, streaming chunk by chunk."""
    from leadscore.engine.io import file_format
    from leadscore.engine.pipeline import count_rows, score_file
    from leadscore.engine.scorer import Scorer

    file_format(output)  # refuse an unwritable format before any work
    settings = Settings()
    scorer = Scorer(_load_model(settings, model))
    total = count_rows(input_file)
    started = time.perf_counter()
    with typer.progressbar(length=total, label="scoring", file=sys.stderr) as bar:
        done = score_file(
            input_file, output, scorer, explain=explain, chunk_size=chunk_size, progress=bar.update
        )
    elapsed = time.perf_counter() - started
    typer.echo(f"scored {done} leads in {elapsed:.1f} s ({done / max(elapsed, 1e-9):,.0f}/s)")


@app.command()
def features() -> None:
    """Print the documented feature table (Markdown), generated from the spec."""
    from leadscore.engine.features import markdown_table

    typer.echo(markdown_table(), nl=False)
