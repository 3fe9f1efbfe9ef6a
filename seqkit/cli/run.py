"""`seqkit run` and `seqkit train`: train on a config, alone or in N processes (--nproc)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import click

from seqkit.cli.group import plugin_manager
from seqkit.cli.options import set_option
from seqkit.errors import DistributedError, SeqkitError

# Set by `--nproc` for the processes it starts: a seqkit error is written to RANK_ERRORS/rank-R
# instead of stderr, and the launcher prints one line for the run, not one per process.
RANK_ERRORS = "SEQKIT_RANK_ERRORS"

# Each process --nproc starts is `python -u -c WORKER ARGV`, on the launcher's module search path,
# so it runs the seqkit (and plugins) the launcher runs. Not `python -m seqkit`: -m puts the working
# directory first on sys.path, and a folder there named seqkit (a clone of the repository) would be
# imported instead. (`python -P` leaves it out too, but only from Python 3.11; the console script
# may not be on PATH, or be another installation's.) A worker whose seqkit does not import says so
# in one line, as the others do.
WORKER = '''\
import os, sys
sys.path[:] = {path}
try:
    from seqkit.cli import cli
    from seqkit.cli.run import worker_main
except Exception as exc:
    errors = os.environ.get({errors})
    if not errors or sys.argv[1:2] == ["--debug"]:
        raise
    with open(os.path.join(errors, "rank-" + os.environ.get("RANK", "0")), "w", encoding="utf-8") as file:
        file.write("a worker process cannot import seqkit: " + type(exc).__name__ + ": "
                   + (str(exc).splitlines() or [""])[0])
    sys.exit(2)
worker_main(cli)
'''

out_option = click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                          help="Run folder (default: runs/<config name>); resumes if it holds a checkpoint.")
restart_option = click.option("--restart", is_flag=True,
                              help="Start over in a run folder that holds an earlier run: its "
                                   "checkpoints, best model, metrics and config are removed first.")
init_option = click.option("--init", metavar="RUN", type=click.Path(path_type=Path),
                           help="Start from RUN's weights and tokenizers (fine-tuning: a run folder, "
                                "e.g. one `seqkit import hf` made, or one of its checkpoint files); "
                                "CONFIG's [model] must be RUN's.")
nproc_option = click.option("--nproc", metavar="N",
                            help="Train with N processes on this machine under DistributedDataParallel: "
                                 "starts torchrun (--standalone --nproc-per-node N) with this command. "
                                 "Each step then takes N times the batches.")


def _train(ctx: click.Context, config: str, overrides, out, test: bool, restart: bool = False,
           init: Path | None = None):
    from seqkit.api import train
    from seqkit.distributed import launched, launched_rank

    main = launched_rank() == 0
    try:
        # progress on stderr (a line rewritten in place on a terminal, plain lines in a pipe),
        # from rank 0 alone; stdout keeps the results
        return train(config, out=out, overrides=overrides, progress=main,
                     manager=plugin_manager(ctx), test=test, restart=restart, init=init)
    except Exception as exc:  # under --nproc: one line for the run, written for the launcher
        if not os.environ.get(RANK_ERRORS) or not launched() or ctx.find_root().params.get("debug"):
            raise
        from seqkit.blame import error_line

        _report(error_line(exc, plugin_manager(ctx)))
        ctx.exit(2)
    except KeyboardInterrupt as exc:
        saved = getattr(exc, "saved", None)
        if main:
            kept = f"saved {saved}" if saved else "the last checkpoint is kept"
            click.echo(f"seqkit: interrupted; {kept}: run the same command to resume", err=True)
        ctx.exit(128 + getattr(exc, "signum", 2))  # 130 for Ctrl-C, 143 for SIGTERM


def _launch(ctx: click.Context, nproc: str | None, config: str, overrides, out: Path | None,
            restart: bool = False, init: Path | None = None) -> bool:
    """With --nproc N > 1, run this same command in N processes under torchrun and exit with its
    status; False when this process should train by itself."""
    from seqkit.distributed import launched

    if nproc is None:
        return False
    try:
        count = int(nproc)
    except ValueError:
        raise SeqkitError(f"--nproc: must be a whole number of processes, got {nproc!r}") from None
    if count < 1:
        raise SeqkitError(f"--nproc: must be at least 1, got {count}")
    if launched():
        raise SeqkitError("--nproc: this process was started by torchrun already (RANK is set); "
                          "leave --nproc out")
    if count == 1:
        return False
    _check_config(ctx, config, overrides)  # bad input is one line here, not one per process
    root = ctx.find_root()
    argv = [*(["--debug"] if root.params.get("debug") else []),
            *(arg for name in root.params.get("disable_plugin") or () for arg in ("--disable-plugin", name)),
            ctx.info_name, config, *(arg for value in overrides for arg in ("--set", value)),
            *(["--out", str(out)] if out is not None else []), *(["--restart"] if restart else []),
            *(["--init", str(init)] if init is not None else [])]
    ctx.exit(_torchrun(count, argv, debug=bool(root.params.get("debug"))))
    return True


def _report(text: str) -> None:
    """Write this process's error line where the launcher of --nproc reads it."""
    from seqkit.distributed import launched_rank

    (Path(os.environ[RANK_ERRORS]) / f"rank-{launched_rank()}").write_text(text, encoding="utf-8")


def worker_main(cli: click.Group) -> None:
    """The command line ``cli`` in a process that --nproc started: an error anywhere in it (not
    only in training: a plugin that fails to load, a bad option) is one line for the launcher."""
    try:
        status = cli.main(prog_name="seqkit", standalone_mode=False)
    except click.ClickException as exc:  # seqkit's one-line errors (CliError) and usage errors
        if not os.environ.get(RANK_ERRORS):
            raise
        _report(exc.format_message())
        status = exc.exit_code
    except click.Abort:
        status = 1
    sys.exit(status if isinstance(status, int) else 0)


def _check_config(ctx: click.Context, config: str, overrides) -> None:
    from seqkit.config import load_config
    from seqkit.preflight import check_run_config

    manager = plugin_manager(ctx)
    check_run_config(load_config(config, overrides, manager=manager), manager)


def _torchrun(nproc: int, argv: list[str], debug: bool) -> int:
    """``torchrun --standalone --nproc-per-node NPROC`` starting WORKER with ARGV, run by torchrun's
    own code in this process; 0 when every process succeeded, 130 or 143 when they were interrupted
    (rank 0 said where it saved). Any other failure raises one line: the error rank 0 reported if
    it had one, else the lowest rank's, else how the first process that failed ended."""
    try:
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import parse_args, run
    except ImportError as exc:  # a torch built without torch.distributed
        raise DistributedError(f"--nproc: torchrun (torch.distributed.run) cannot be imported: "
                               f"{type(exc).__name__}: {exc}") from None

    if not debug:  # torchrun's own log lines repeat what the failing process said
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("torch.distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
    saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", RANK_ERRORS)}
    if saved["OMP_NUM_THREADS"] is None:  # torchrun would set 1 (and warn); share the cores out
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    path = [os.fspath(entry) for entry in sys.path if isinstance(entry, (str, os.PathLike))]
    worker = WORKER.format(path=repr(path), errors=repr(RANK_ERRORS))
    with tempfile.TemporaryDirectory(prefix="seqkit-ranks-") as errors:
        os.environ[RANK_ERRORS] = errors
        try:
            run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "--no-python",
                            sys.executable, "-u", "-c", worker, *argv]))
        except ChildFailedError as exc:
            reported = sorted(Path(errors).glob("rank-*"), key=lambda p: int(p.name.split("-")[1]))
            if reported:  # rank 0's error if it had one, else the lowest rank's
                rank, text = int(reported[0].name.split("-")[1]), reported[0].read_text(encoding="utf-8")
                raise DistributedError(text if rank == 0 else f"rank {rank}: {text}") from None
            _, failure = exc.get_first_failure()
            if failure.exitcode in (130, 143):  # Ctrl-C, SIGTERM: rank 0 said where it saved
                return failure.exitcode
            how = (f"was killed by signal {failure.signal_name()}" if failure.exitcode < 0
                   else f"exited with status {failure.exitcode}")
            raise DistributedError(f"rank {failure.local_rank}: the worker process {how} without "
                                   "reporting an error") from None
        except SignalException:
            return 130
        except Exception as exc:  # rendezvous and launch failures
            if debug:
                raise
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise DistributedError(f"--nproc: cannot start the worker processes: "
                                   f"{type(exc).__name__}: {detail}") from None
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return 0


def _short(value, width: int = 100) -> str:
    """A sample for the terminal, on its line: text with its line breaks and tabs escaped (as
    `seqkit generate` writes them), long feature sequences cut."""
    from seqkit.readers import escape

    text = escape(value) if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def training_options(command):
    """CONFIG and the options `run` and `train` share, and the context."""
    for decorate in (click.pass_context, nproc_option, init_option, restart_option, out_option, set_option,
                     click.argument("config", type=click.Path(dir_okay=False))):
        command = decorate(command)
    return command


@click.command()
@training_options
def run(ctx: click.Context, config: str, overrides, out, restart, init, nproc) -> None:
    """Train on CONFIG (resuming if the run folder has a checkpoint), evaluate the best model on
    the test split, print sample outputs and a summary.

    With --nproc N (or started by torchrun) the processes train one model together; only rank 0
    writes the run folder and prints.

    Ctrl-C or SIGTERM finishes the current step, saves it and exits (130 or 143); the same command
    resumes. One run writes a folder at a time; a changed model or data is refused (--restart).
    """
    from seqkit.distributed import launched_rank

    if _launch(ctx, nproc, config, overrides, out, restart, init):
        return
    result = _train(ctx, config, overrides, out, test=True, restart=restart, init=init)
    if launched_rank() != 0:
        return
    for sample in result.samples:
        click.echo(f"  {_short(sample['source'])}\n    -> {_short(sample['prediction'])}"
                   f"   (reference: {_short(sample['reference'])})")
    click.echo(f"run folder: {result.folder}")
    click.echo(f"steps: {result.summary['step']}  parameters: {result.summary['parameters']:,}  "
               f"best step: {result.summary['best_step']}")
    if result.test:
        click.echo("test: " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in result.test.items()))


@click.command("train")
@training_options
def train_command(ctx: click.Context, config: str, overrides, out, restart, init, nproc) -> None:
    """Train on CONFIG (resuming if the run folder has a checkpoint); no test evaluation.
    --nproc N trains with N processes, as for `seqkit run`."""
    from seqkit.distributed import launched_rank

    if _launch(ctx, nproc, config, overrides, out, restart, init):
        return
    result = _train(ctx, config, overrides, out, test=False, restart=restart, init=init)
    if launched_rank() != 0:
        return
    click.echo(f"run folder: {result.folder}  steps: {result.summary['step']}  "
               f"best step: {result.summary['best_step']}")
