"""Templates, drafts and approvals, and the next-update promise."""
