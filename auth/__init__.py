"""Who may use the control plane's API: API tokens now, users and roles with the web issue."""
