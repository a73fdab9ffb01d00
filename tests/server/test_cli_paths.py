"""`matte remove`'s inputs and outputs (server/batch_paths.py): which files a folder gives,
where each cut-out goes, and the combinations refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.batch_paths import Job, UsageError, plan_jobs


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def pairs(jobs: list[Job], root: Path) -> list[tuple[str, str | None]]:
    """(input relative to root, output base relative to root) for each job."""
    return [
        (
            str(job.source.relative_to(root)) if job.source else "-",
            str(job.base.relative_to(root)) if job.base else None,
        )
        for job in jobs
    ]


def test_a_folder_gives_its_top_level_images_in_order(tmp_path: Path) -> None:
    touch(tmp_path, "in/b.PNG", "in/a.jpg", "in/c.webp", "in/d.jpeg", "in/sub/e.jpg")
    touch(tmp_path, "in/notes.txt", "in/.hidden.jpg", "in/._a.jpg", "in/f.gif")
    jobs = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), recursive=False, to_file=False)
    assert pairs(jobs, tmp_path) == [
        ("in/a.jpg", "out/a"),
        ("in/b.PNG", "out/b"),
        ("in/c.webp", "out/c"),
        ("in/d.jpeg", "out/d"),
    ]
    assert all(not job.exact and job.clashes_with is None for job in jobs)


def test_recursive_keeps_the_paths_relative_to_the_folder(tmp_path: Path) -> None:
    touch(tmp_path, "in/a.jpg", "in/sub/b.jpg", "in/sub/deeper/c.png", "in/.git/d.jpg")
    jobs = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), recursive=True, to_file=False)
    assert pairs(jobs, tmp_path) == [
        ("in/a.jpg", "out/a"),
        ("in/sub/b.jpg", "out/sub/b"),
        ("in/sub/deeper/c.png", "out/sub/deeper/c"),
    ]
    assert [job.label for job in jobs][1] == str(tmp_path / "in" / "sub" / "b.jpg")


def test_files_go_to_the_output_folder_by_name_whatever_their_extension(tmp_path: Path) -> None:
    touch(tmp_path, "x/photo.v2.jpg", "y/scan.tiff")
    inputs = [str(tmp_path / "x/photo.v2.jpg"), str(tmp_path / "y/scan.tiff")]
    jobs = plan_jobs(inputs, str(tmp_path / "out"), recursive=False, to_file=False)
    assert pairs(jobs, tmp_path) == [
        ("x/photo.v2.jpg", "out/photo.v2"),
        ("y/scan.tiff", "out/scan"),
    ]
    # The extension is added to the name, never put in place of its last dotted part.
    assert jobs[0].targets([".png"]) == [tmp_path / "out/photo.v2.png"]
    assert jobs[0].targets([".png", ".jpg"]) == [
        tmp_path / "out/photo.v2.png",
        tmp_path / "out/photo.v2.jpg",
    ]


def test_a_missing_input_is_a_job_that_will_fail_not_a_usage_error(tmp_path: Path) -> None:
    jobs = plan_jobs(
        [str(tmp_path / "gone.jpg")], str(tmp_path / "out"), recursive=False, to_file=False
    )
    assert pairs(jobs, tmp_path) == [("gone.jpg", "out/gone")]


def test_the_output_folder_inside_the_input_is_not_read_back(tmp_path: Path) -> None:
    touch(tmp_path, "in/a.jpg", "in/out/a.png", "in/out/old.jpg", "in/sub/b.jpg")
    out = str(tmp_path / "in" / "out")
    jobs = plan_jobs([str(tmp_path / "in")], out, recursive=True, to_file=False)
    assert pairs(jobs, tmp_path) == [("in/a.jpg", "in/out/a"), ("in/sub/b.jpg", "in/out/sub/b")]


def test_two_inputs_with_one_output_name_clash(tmp_path: Path) -> None:
    touch(tmp_path, "in/photo.jpg", "in/photo.png", "other/photo.webp")
    inputs = [str(tmp_path / "in"), str(tmp_path / "other" / "photo.webp")]
    jobs = plan_jobs(inputs, str(tmp_path / "out"), recursive=False, to_file=False)
    first = str(tmp_path / "in" / "photo.jpg")
    assert [job.clashes_with for job in jobs] == [None, first, first]


def test_stdin_and_stdout(tmp_path: Path) -> None:
    [job] = plan_jobs(["-"], "-", recursive=False, to_file=False)
    assert (job.label, job.source, job.base, job.exact) == ("stdin", None, None, True)
    assert job.targets([".png"]) == []
    [job] = plan_jobs(["-"], str(tmp_path / "cut.webp"), recursive=False, to_file=True)
    assert (job.source, job.base) == (None, tmp_path / "cut.webp")
    assert job.targets([".webp"]) == [tmp_path / "cut.webp"]
    touch(tmp_path, "a.jpg")
    [job] = plan_jobs([str(tmp_path / "a.jpg")], "-", recursive=False, to_file=False)
    assert (job.source, job.base) == (tmp_path / "a.jpg", None)


def test_one_file_to_a_named_file(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg")
    [job] = plan_jobs(
        [str(tmp_path / "a.jpg")], str(tmp_path / "x/cut.png"), recursive=False, to_file=True
    )
    assert (job.source, job.base, job.exact) == (tmp_path / "a.jpg", tmp_path / "x/cut.png", True)
    assert job.targets([".png"]) == [tmp_path / "x/cut.png"]


@pytest.mark.parametrize(
    ("inputs", "output", "to_file", "message"),
    [
        (["-", "a.jpg"], "out", False, "- (stdin) must be the only input"),
        (["-"], "out", False, "with - (stdin) as the input, -o must be - or a file name"),
        (["a.jpg", "b.jpg"], "-", False, "-o - takes one input file; give -o a folder for more"),
        (["folder"], "-", False, "-o - takes one input file; give -o a folder for more"),
        (
            ["a.jpg", "b.jpg"],
            "cut.png",
            True,
            "-o cut.png (a file) takes one input file; give -o a folder for more",
        ),
        (
            ["folder"],
            "cut.png",
            True,
            "-o cut.png (a file) takes one input file; give -o a folder for more",
        ),
    ],
)
def test_combinations_that_cannot_work_are_usage_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inputs: list[str],
    output: str,
    to_file: bool,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "a.jpg", "b.jpg", "folder/c.jpg")
    with pytest.raises(UsageError) as error:
        plan_jobs(inputs, output, recursive=False, to_file=to_file)
    assert str(error.value) == message
