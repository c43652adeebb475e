"""Which zip members of the PetImages archive are candidates for cleaning, and why the others are not.

Only `PetImages/{Cat,Dog}/<numeric id>.<image extension>` is a candidate: the class is read from that
exact layout, never from a folder name found anywhere in the path, so `Other/Cat/1.jpg`,
`/abs/PetImages/Cat/1.jpg`, `PetImages/../Cat/1.jpg` or `__MACOSX/PetImages/Cat/._1.jpg` can never
enter the training set. Every other member is ignored with one reason, counted in the summary.
"""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass

ROOT = "PetImages"
CLASSES = ("Cat", "Dog")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp")
CANDIDATE_NAME = re.compile(r"^[0-9]+\.(?:" + "|".join(IMAGE_EXTENSIONS) + r")$", re.IGNORECASE)

# Ignored-member reasons, in the order they are tested (the first that applies is recorded).
IGNORE_REASONS = (
    "symlink",  # a link entry (unix mode S_IFLNK): its bytes are a path, not an image
    "absolute_path",  # /x, \x or C:x
    "traversal",  # a `..` or `.` component, or an empty one (a//b)
    "macos_metadata",  # __MACOSX/ trees, .DS_Store, AppleDouble `._name` files
    "thumbs_db",  # Windows' thumbnail cache, present in the real archive's class folders
    "outside_petimages",  # another root folder, or a file at the top level
    "wrong_depth",  # PetImages/x or PetImages/Cat/sub/1.jpg
    "unknown_class",  # PetImages/Bird/1.jpg
    "not_an_image_name",  # PetImages/Cat/readme.txt, PetImages/Cat/cat1.jpg
)


@dataclass(frozen=True)
class Placement:
    """Where a member sits: its class when it is a candidate, else the reason it is ignored."""

    cls: str | None
    ignored: str | None

    @property
    def candidate(self) -> bool:
        return self.cls is not None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def place(info: zipfile.ZipInfo) -> Placement:
    """Classify one (non-directory) member by its raw name and attributes."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if _is_symlink(info):
        return Placement(None, "symlink")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return Placement(None, "absolute_path")
    if any(part in ("", ".", "..") for part in parts):
        return Placement(None, "traversal")
    if "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._"):
        return Placement(None, "macos_metadata")
    if parts[-1].lower() == "thumbs.db":
        return Placement(None, "thumbs_db")
    if parts[0] != ROOT or len(parts) == 1:
        return Placement(None, "outside_petimages")
    if len(parts) != 3:
        return Placement(None, "wrong_depth")
    if parts[1] not in CLASSES:
        return Placement(None, "unknown_class")
    if not CANDIDATE_NAME.match(parts[2]):
        return Placement(None, "not_an_image_name")
    return Placement(parts[1], None)
