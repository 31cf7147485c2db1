"""`leadscore generate|train|evaluate|score|features`: the engine on files, with no server."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.core.config import Settings

if TYPE_CHECKING:
    from leadscore.engine.model import LeadModel, ScoringPolicy

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="Model directory (default: the built-in model).")
]
MappingOpt = Annotated[
    Path | None, typer.Option("--mapping", help="YAML column mapping for a CRM export.")
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
    algorithm: Annotated[str, typer.Option(help="lightgbm or random_forest")] = "lightgbm",
    seed: Annotated[int, typer.Option("--seed")] = 0,
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
    if algorithm not in ("lightgbm", "random_forest"):
        raise typer.BadParameter("algorithm must be lightgbm or random_forest")
    spec = load_mapping(mapping) if mapping else None
    frame = load_training_frame(data, spec)
    attributes = spec.attribute_spec if spec else AttributeSpec()
    config = ModelConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        num_threads=settings.num_threads,
        seed=seed,
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
    plot: Annotated[Path | None, typer.Option("--plot", help="Calibration plot PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Held-out metrics of a model, or of the whole training pipeline by cross-validation."""
    from leadscore.engine.attributes import AttributeSpec
    from leadscore.engine.mapping import load_mapping, load_training_frame
    from leadscore.engine.model import ModelConfig
    from leadscore.engine.pipeline import calibration_plot, cross_validate, evaluate_model
    from leadscore.engine.training import TrainingInput

    settings = Settings()
    spec = load_mapping(mapping) if mapping else None
    frame = load_training_frame(data, spec)
    attributes = spec.attribute_spec if spec else AttributeSpec()
    inputs = TrainingInput.from_frame(frame, attributes)
    if cv is not None:
        config = ModelConfig(num_threads=settings.num_threads, seed=seed)
        result = cross_validate(inputs, config, attributes, cv)
    else:
        result = evaluate_model(_load_model(settings, model), inputs)
    if plot is not None:
        calibration_plot(result, plot)
    if as_json:
        typer.echo(json.dumps(result.metrics, indent=2))
    else:
        for head, m in result.metrics.items():
            typer.echo(
                f"{head:<11} AUC {m['auc']:.4f}  Brier {m['brier']:.4f}  "
                f"log-loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}  n {int(m['n'])}"
            )


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
