"""The bot as deployed: real `python -m bot` processes, restarts, two processes on one
database, one deliverer at a time."""
