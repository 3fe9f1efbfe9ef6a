"""Every hook a seqkit plugin can implement. A plugin is a module with @seqkit.hookimpl functions,
named in the ``seqkit`` entry-point group; it may accept fewer arguments than the spec names.

A ``factory`` may be given as the string ``"module:attribute"``: it is imported when first used, so
``seqkit --help`` and ``seqkit plugins`` list the plugin without importing torch."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("seqkit")

# -- model components ---------------------------------------------------------------------------


@hookspec
def register_encoders(register):
    """Register encoders: ``register(name, factory, config_class)``; ``factory(config, d_model)``
    returns an :class:`seqkit.interfaces.Encoder`, ``config`` an instance of the dataclass
    ``config_class`` built from the ``[model.encoder]`` table."""


@hookspec
def register_decoders(register):
    """Register decoders: ``register(name, factory, config_class)``; ``factory(config, d_model)``
    returns a :class:`seqkit.interfaces.Decoder`, ``config`` built from ``[model.decoder]``."""


# -- tasks --------------------------------------------------------------------------------------


@hookspec
def register_tasks(register):
    """Register tasks: ``register(name, factory, config_class)``; ``factory(config)`` returns a
    :class:`seqkit.Task` (its contract: model_kind and model_shape, state_dict as JSON, a seed of
    its own, ``train``/``valid``/``test`` file options for ``--data``, metric_directions),
    ``config`` built from the ``[task]`` table."""


# -- devices ------------------------------------------------------------------------------------


@hookspec
def register_backends(register):
    """Register device backends: ``register(name, factory)`` (``config_class`` may be given and is
    None by default); ``factory()`` returns a :class:`seqkit.Backend` whose ``name`` is ``name``,
    cheaply and without failing where the device is missing (``is_available()`` says so)."""


# -- command line -------------------------------------------------------------------------------


@hookspec
def register_commands(cli):
    """Add commands to the command line: ``cli`` is a :class:`click.Group`; use ``@cli.command()``
    or ``cli.add_command(command)``. A name taken by seqkit or another plugin is an error."""
