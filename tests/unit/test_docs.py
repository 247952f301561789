"""The README stays short and the documentation says each thing once, with links that lead somewhere."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 16 * 1024  # "about 15 KB": what it is, two commands, how it works, the API, the guarantees
SHORTEST_REPEAT_WORDS = 8

CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(markdown: str) -> list[str]:
    """The prose of a document, sentence by sentence, normalised: code blocks are examples, not prose."""
    text = LINK.sub(r"\1", CODE_BLOCK.sub("\n\n", markdown))
    blocks = re.split(r"\n\s*\n|\|", text)  # paragraphs, and each table cell on its own
    found = []
    for block in blocks:
        prose = " ".join(re.sub(r"[*`#>]", "", block).split())
        for sentence in SENTENCE_END.split(prose):
            words = re.sub(r"^[-\d.]+\s+", "", sentence).lower().rstrip(".:;!? ").split()
            if len(words) >= SHORTEST_REPEAT_WORDS:
                found.append(" ".join(words))
    return found


def test_the_readme_fits_in_about_15_kb():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move the detail to docs/"


def test_no_sentence_appears_twice_across_the_readme_and_docs():
    places = defaultdict(list)
    for document in DOCUMENTS:
        for sentence in sentences(document.read_text()):
            places[sentence].append(document.relative_to(ROOT).as_posix())
    repeated = {sentence: where for sentence, where in places.items() if len(where) > 1}
    assert not repeated, "\n".join(f"{where}: {sentence}" for sentence, where in repeated.items())


def test_the_sentence_finder_sees_prose_in_paragraphs_lists_and_tables_but_not_code():
    markdown = (
        "Intro line one\ncontinues here with enough words to count.\n\n"
        "- A list item that is long enough to be a sentence.\n\n"
        "| a | A table cell that is long enough to count as one. |\n\n"
        "```\nA code line that is long enough to count if it were prose.\n```\n"
    )
    assert sentences(markdown) == [
        "intro line one continues here with enough words to count",
        "a list item that is long enough to be a sentence",
        "a table cell that is long enough to count as one",
    ]


def anchors(document: Path) -> set[str]:
    """The anchors of a Markdown file's headings, spelled as GitHub makes them: lower case, spaces to
    hyphens, other punctuation dropped."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", CODE_BLOCK.sub("", document.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_relative_link_leads_to_a_file_that_exists():
    for document in DOCUMENTS:
        for _, target in LINK.findall(CODE_BLOCK.sub("", document.read_text())):
            path, _, anchor = target.partition("#")
            if not re.match(r"^[a-z]+:", path):
                page = document.parent / path if path else document
                assert page.exists(), f"{document.name} links to {target}"
                assert not anchor or page.suffix != ".md" or anchor in anchors(page), f"{document.name} links to {target}"


def test_anchors_are_spelled_as_github_spells_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Operations\n\n## Browsers and hosts\n\n```\n# not a heading\n```\n### The API's token: API_AUTH\n")
    assert anchors(page) == {"operations", "browsers-and-hosts", "the-apis-token-api_auth"}


def test_the_files_that_point_into_docs_find_their_page():
    for pointer in ("docker-compose.yml",):
        for page in re.findall(r"docs/[\w-]+\.md", (ROOT / pointer).read_text()):
            assert (ROOT / page).exists(), f"{pointer} points to {page}"


# A path into this repository, as the prose and the comments name one: a top-level folder of ours,
# then a file (`messaging/redis/flow.py`, `tests/unit/test_docs.py::test_every_relative_link_leads_to_a_file_that_exists`) or a folder.
OUR_FOLDERS = "|".join(sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")))
NAMED_PATH = re.compile(rf"(?<![\w./-])((?:{OUR_FOLDERS})/[\w./-]*[\w/])(?:::(\w+))?")
BARE_TEST = re.compile(r"(?<!::)`(test_\w+)`")
SOURCES = [*DOCUMENTS, *(ROOT / "bench").glob("*.md"),
           *(path for folder in ("messaging", "api", "worker", "bench", "harness", "localrun", "receiver", "tests")
             for path in (ROOT / folder).rglob("*") if path.suffix in {".py", ".sql", ".lua"})]  # fmt: skip


def test_every_path_the_docs_and_the_comments_name_exists_and_every_test_they_name_is_defined():
    defined = {match for path in (ROOT / "tests").rglob("test_*.py") for match in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    missing = []
    for source in SOURCES:
        text = source.read_text()
        for path, test in NAMED_PATH.findall(text):
            target = ROOT / path.rstrip(".")
            if not target.exists():
                missing.append(f"{source.relative_to(ROOT)} names {path}")
            elif test and not re.search(rf"^def {test}\(", target.read_text(), re.M):
                missing.append(f"{source.relative_to(ROOT)} names {path}::{test}")
        missing += [f"{source.relative_to(ROOT)} names {name}" for name in BARE_TEST.findall(text) if name not in defined]
    assert not missing, "\n".join(missing)


def test_no_example_request_carries_a_fixed_send_at_that_time_will_make_refused():
    """A `send_at` written as a date goes stale (the API takes now to 35 days ahead): examples compute theirs."""
    fixed = re.compile(r"-d\s+'[^']*\"send_at\":\s*\"\d{4}-")
    stale = [str(path.relative_to(ROOT)) for path in DOCUMENTS if fixed.search(path.read_text())]
    assert not stale, stale


def test_the_readme_names_the_port_variables_of_make_run():
    text = README.read_text()
    assert all(name in text for name in ("GUNICORN_BIND", "FLOWER_PORT", "RECEIVER_PORT"))
