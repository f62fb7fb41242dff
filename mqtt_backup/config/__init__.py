"""What a config file means: the models, loading, and checks of the machine."""
