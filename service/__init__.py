"""The BentoML service (see issue: sessions that keep recurrent state)."""
