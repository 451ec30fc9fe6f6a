"""MkDocs hook: the site's home page is README.md itself (one front door, no copy to drift).

docs/index.md is a placeholder; its Markdown is replaced by the README's, with the README's
links into docs/ made relative to the site (`docs/gpu.md` -> `gpu.md`).
"""

from pathlib import Path


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != "index.md":
        return markdown
    readme = Path(config.config_file_path).parent / "README.md"
    return readme.read_text(encoding="utf-8").replace("](docs/", "](")
