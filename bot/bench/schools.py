"""Synthetic clause bases for the "how does latency grow with schools" measurement: the five real schools,
copied under new slugs until there are ``n``. Only the slug is rewritten (folder, ``slug:``, ``school:`` and
clause-id prefixes); the policy text and quotes are unchanged, so each copy answers exactly like its original.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

SHARED_FILES = ("topics.yml", "entities.yml", "helplines.yml")


def real_schools(knowledge_dir: Path) -> list[str]:
    return sorted(p.name for p in knowledge_dir.iterdir() if (p / "school.yml").is_file())


def copy_slug(text: str, old: str, new: str) -> str:
    """Rewrite ``old`` as ``new`` where it is the slug: a whole word, not followed by another slug character
    (so "lunsford" in "lunsford.3.1" and "slug: lunsford" changes, "lunsfordians" does not)."""
    return re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, text)


def synthetic_knowledge(source: Path, target: Path, count: int) -> list[str]:
    """Write a clause base with ``count`` schools to ``target`` (the real ones first); return the slugs."""
    originals = real_schools(source)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in SHARED_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    slugs = []
    for n in range(count):
        original = originals[n % len(originals)]
        slug = original if n < len(originals) else f"{original}-copy{n // len(originals)}"
        (target / slug).mkdir()
        for file in (source / original).iterdir():
            if not file.is_file():
                continue
            data = file.read_text(encoding="utf-8")
            if file.suffix == ".yml" and slug != original:
                data = copy_slug(data, original, slug)
            (target / slug / file.name).write_text(data, encoding="utf-8")
        slugs.append(slug)
    return slugs
