"""Customer accounts: who they are, what they use, their contacts and their SLA contract."""
