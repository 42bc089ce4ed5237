"""The pages: figures, what the pages share, and each page; their strings in two languages."""
