"""Training the project's default models, and the corpora they train on."""
