"""Pure units: the domain (lifecycle, roles, ladder, parsing, catalogue, hours, durations,
sub-commands), message templates and the parts of delivery, without a database or Slack."""
