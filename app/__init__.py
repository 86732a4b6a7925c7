"""nextstep: every interview ends with an agreed next step."""
