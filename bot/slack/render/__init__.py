"""Pure Block Kit rendering from plain data: card, messages, modals, help, App Home."""
