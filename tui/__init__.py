"""The Textual explorer (`prag tui`): one question, six methods, side by side.

Everything here is presentation. Answers, retrieval, adapters and norms come from
`engine`; this package only decides what to show and keeps the UI responsive by
running engine calls in thread workers.
"""
