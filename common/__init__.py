"""Framework-free code shared by every AlexNet backend (never imports a framework)."""
