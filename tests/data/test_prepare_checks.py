"""What every prepare checks and says: protocol sizes, --dst outside --src, odd names, oversized
headers, the read-back with the training readers, and the report of what was written."""

from __future__ import annotations
