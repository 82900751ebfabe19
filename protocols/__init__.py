"""Protocol definitions (YAML), shipped inside the package as ``restorever.protocols``; no code lives here."""
