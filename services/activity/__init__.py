"""Activity: what each customer did, recorded by the API as it answers, with its own database."""
