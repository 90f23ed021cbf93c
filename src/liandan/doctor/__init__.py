"""The training doctor: probes, rules, knowledge base, findings, repair."""
