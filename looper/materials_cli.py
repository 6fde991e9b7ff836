"""`tutor assistant materials`: give an assistant course materials, list them, take them away.

Materials are for the model only; these commands show their names and sizes, never their text.
"""

from __future__ import annotations

from pathlib import Path

import click

from looper.cli import TEXT, Failure, run_async, with_tutor
from looper.core import Tutor
from looper.models import Material
from looper.settings import Settings


@click.group()
def materials() -> None:
    """Course materials an assistant answers from (text, Markdown or PDF), never shown."""


def read_file(path: str) -> bytes:
    """A file's bytes; Failure with one line when it cannot be read."""
    file = Path(path)
    if not file.exists():
        raise Failure(f"{path}: no such file")
    if file.is_dir():
        raise Failure(f"{path} is a folder, not a file")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror or exc}") from exc


def size(material: Material) -> str:
    return f"{material.size / 1024:,.1f} KiB" if material.size >= 1024 else f"{material.size} B"


@materials.command("add")
@click.argument("assistant_ref", metavar="ASSISTANT", type=TEXT)
@click.argument("files", metavar="FILE…", nargs=-1, required=True, type=TEXT)
@click.pass_obj
@run_async
async def materials_add(settings: Settings, assistant_ref: str, files: tuple[str, ...]) -> None:
    """Give an assistant (id or name) one or more files: notes, an answer key, a rubric."""
    contents = [(Path(path).name, read_file(path)) for path in files]  # all readable first

    async def add(tutor: Tutor) -> list[Material]:
        await tutor.find_assistant(assistant_ref)
        return [await tutor.add_material(assistant_ref, name, data) for name, data in contents]

    for added in await with_tutor(settings, add):
        click.echo(f"{added.id}\t{added.name}\t{size(added)}\t{added.tokens:,} tokens")


@materials.command("ls")
@click.argument("assistant_ref", metavar="ASSISTANT", type=TEXT)
@click.pass_obj
@run_async
async def materials_ls(settings: Settings, assistant_ref: str) -> None:
    """List an assistant's materials: id, name, size and tokens."""
    assistant, found = await with_tutor(settings, lambda t: t.materials(assistant_ref))
    if not found:
        click.echo(f"{assistant.name} has no materials", err=True)
    for material in found:
        click.echo(f"{material.id}\t{material.name}\t{size(material)}\t{material.tokens:,} tokens")


@materials.command("rm")
@click.argument("assistant_ref", metavar="ASSISTANT", type=TEXT)
@click.argument("material_id", metavar="MATERIAL_ID", type=TEXT)
@click.pass_obj
@run_async
async def materials_rm(settings: Settings, assistant_ref: str, material_id: str) -> None:
    """Take a material away from an assistant."""
    removed = await with_tutor(settings, lambda t: t.remove_material(assistant_ref, material_id))
    click.echo(f"removed {removed.name} ({removed.id})")
