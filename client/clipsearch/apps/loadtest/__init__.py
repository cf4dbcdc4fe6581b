"""``clipsearch loadtest``: closed- and open-loop load against the services it is given."""
