"""On-call: schedules, rotations and who is on call at a given instant."""
