"""How stages are executed: child processes for heavy stages (`process`)."""
