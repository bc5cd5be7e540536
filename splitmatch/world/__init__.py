"""The built-in world: a small procedural zero-shot segmentation benchmark that runs offline."""
