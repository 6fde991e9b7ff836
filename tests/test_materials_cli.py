"""`tutor assistant materials add|ls|rm` and `--style`, as a teacher types them: every bad
input is one line on stderr and exit status 1, and the materials' text is never printed."""

from __future__ import annotations

from pathlib import Path

from tests.harness import Cli


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` (ASCII, no parentheses), written by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return pdf


def one_line_failure(cli: Cli, *args: str) -> str:
    done = cli.run(*args)
    assert done.returncode == 1, done.stdout
    assert done.stdout == ""
    assert done.stderr.startswith("tutor: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_materials_are_added_listed_and_removed(cli: Cli) -> None:
    cli.ok("assistant", "add", "--name", "Physics", "--instructions", "Teach physics.")
    notes = cli.cwd / "notes.md"
    notes.write_text("# Notes\n\nThe secret constant of the course is 7.77.\n")
    key = cli.cwd / "key.pdf"
    key.write_bytes(tiny_pdf("Answer key: question one is forty two"))
    added = cli.ok("assistant", "materials", "add", "Physics", str(notes), str(key))
    rows = [line.split("\t") for line in added.splitlines()]
    assert [row[1] for row in rows] == ["notes.md", "key.pdf"]
    assert rows[0][2] == f"{notes.stat().st_size} B"
    assert "secret" not in added and "forty" not in added
    listed = cli.ok("assistant", "materials", "ls", "physics")
    assert [line.split("\t")[:3] for line in listed.splitlines()] == [r[:3] for r in rows]
    removed = cli.ok("assistant", "materials", "rm", "Physics", rows[0][0])
    assert removed == f"removed notes.md ({rows[0][0]})\n"
    assert [
        line.split("\t")[1]
        for line in cli.ok("assistant", "materials", "ls", "Physics").splitlines()
    ] == ["key.pdf"]


def test_bad_inputs_are_one_line_each_and_add_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.ok("assistant", "add", "--name", "Physics", "--instructions", "Teach physics.")
    notes = cli.cwd / "notes.md"
    notes.write_text("Notes.")
    broken = cli.cwd / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not a PDF at all")
    missing = str(cli.cwd / "missing.md")
    assert "missing.md: no such file" in one_line_failure(
        cli, "assistant", "materials", "add", "Physics", str(notes), missing
    )
    assert "broken.pdf is not a readable PDF" in one_line_failure(
        cli, "assistant", "materials", "add", "Physics", str(broken)
    )
    assert "is a folder" in one_line_failure(
        cli, "assistant", "materials", "add", "Physics", str(tmp_path)
    )
    assert "no assistant 'Chemistry'" in one_line_failure(
        cli, "assistant", "materials", "add", "Chemistry", str(notes)
    )
    assert "no assistant 'Chemistry'" in one_line_failure(
        cli, "assistant", "materials", "ls", "Chemistry"
    )
    assert "no material 'mat_nope'" in one_line_failure(
        cli, "assistant", "materials", "rm", "Physics", "mat_nope"
    )
    listed = cli.run("assistant", "materials", "ls", "Physics")
    assert (listed.stdout, listed.stderr) == ("", "Physics has no materials\n")


def test_style_is_set_on_add_and_edit(cli: Cli) -> None:
    cli.ok("assistant", "add", "--name", "Coach", "--instructions", "Teach.", "--style", "coach")
    edited = cli.ok("assistant", "edit", "Coach", "--style", "direct")
    assert edited.startswith("edited assistant 'Coach'")
    refused = cli.run("assistant", "edit", "Coach", "--style", "socratic")
    assert (
        refused.returncode == 2 and "'socratic' is not one of 'direct', 'coach'" in refused.stderr
    )
