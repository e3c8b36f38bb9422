"""Growth analytics: activation, churn risk, expansion, NPS, invitations, releases and feedback."""
