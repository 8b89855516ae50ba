"""Framework-free code shared by the three AlexNet backends (never imports a framework)."""
